/* LD_PRELOAD shim for the daemon benchmark: counts buffer swaps (frames shown by an OpenGL
   xscreensaver hack, which uses EGL or GLX) and writes the count to $SWAPCOUNT_FILE every 10. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long frames;

static void counted(void) {
    if (++frames % 10 == 0) {
        const char *path = getenv("SWAPCOUNT_FILE");
        FILE *f = path ? fopen(path, "w") : NULL;
        if (f) {
            fprintf(f, "%lu\n", frames);
            fclose(f);
        }
    }
}

unsigned int eglSwapBuffers(void *display, void *surface) {
    static unsigned int (*real)(void *, void *);
    if (!real)
        real = (unsigned int (*)(void *, void *))dlsym(RTLD_NEXT, "eglSwapBuffers");
    unsigned int ok = real(display, surface);
    counted();
    return ok;
}

void glXSwapBuffers(void *display, unsigned long drawable) {
    static void (*real)(void *, unsigned long);
    if (!real)
        real = (void (*)(void *, unsigned long))dlsym(RTLD_NEXT, "glXSwapBuffers");
    real(display, drawable);
    counted();
}
