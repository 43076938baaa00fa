"""A procedural lava lamp: metaball wax blobs heated at the base, rendered as a lit glass lamp."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from lavalamp.models.limits import check_frame_size

MAX_PHYSICS_STEP_S = 1.0 / 30.0
"""Longest physics step while rendering; lower frame rates take several steps per frame."""
WARMUP_STEP_S = 0.2
"""Physics step during the unrendered warm-up (the dynamics' fastest time constant is about 1 s)."""


# Lamp geometry in lamp units: the glass is 1 tall, y = 0 at its bottom, x = 0 on its axis.
GLASS_TOP_FRAME = 0.045
"""Row of the glass top as a fraction of the frame height (the cap sits above it)."""
GLASS_BOTTOM_FRAME = 0.94
"""Row of the glass bottom as a fraction of the frame height (the base sits below it)."""
STALK_LENGTH = 0.1
"""A rising blob stays tied to the pool by a thinning stalk until it is this far above it."""


@dataclass(frozen=True)
class Glass:
    """The outline of the glass bottle (lamp units: the glass is 1 tall)."""

    bottom: float
    """Inner half-width at the base."""
    top: float
    """Inner half-width under the cap."""
    bulge: float = 0.0
    """Extra half-width of a bullet-shaped bottle, largest a third of the way up."""

    def half_width(self, y: np.ndarray | float) -> np.ndarray:
        """Inner half-width at height y, with rounded shoulders at the base and under the cap."""
        y = np.clip(np.asarray(y, dtype=np.float64), 0.0, 1.0)
        straight = self.bottom + (self.top - self.bottom) * y
        bulge = self.bulge * np.sin(np.pi * y ** 0.75)
        rounding = 0.05 * np.exp(-y / 0.035) + 0.012 * np.exp(-(1.0 - y) / 0.03)
        return straight + bulge - rounding


@dataclass(frozen=True)
class Palette:
    """The look of one lamp: colours (RGB, 0..255) and bottle shape."""

    background_top: tuple[float, float, float]
    """Background colour at the top of the frame."""
    background_bottom: tuple[float, float, float]
    """Background colour at the bottom of the frame."""
    glow: tuple[float, float, float]
    """Colour of the halo the lit glass casts around itself (zero for a lamp in front of a wall)."""
    liquid_top: tuple[float, float, float]
    """Liquid colour near the cap, far from the bulb."""
    liquid_bottom: tuple[float, float, float]
    """Liquid colour just above the bulb."""
    wax_cool: tuple[float, float, float]
    """Wax colour high in the lamp."""
    wax_hot: tuple[float, float, float]
    """Wax colour near the bulb, where light shines through it."""
    metal: tuple[float, float, float]
    """Colour of the cap and base."""
    glass: Glass
    """Shape of the bottle."""
    reflection: float
    """Brightness of the window reflection on the glass (0..255 added at its centre)."""
    rim: tuple[float, float, float]
    """Colour added along the edges of the glass, where light travels through it at a slant."""


PALETTES: dict[str, Palette] = {
    "classic": Palette(  # orange-red wax in purple liquid, on black (like a 1970s lamp)
        background_top=(2, 1, 3), background_bottom=(5, 2, 4), glow=(60, 18, 50),
        liquid_top=(92, 16, 64), liquid_bottom=(215, 72, 118),
        wax_cool=(250, 50, 58), wax_hot=(255, 215, 120), metal=(52, 46, 50),
        glass=Glass(bottom=0.36, top=0.22), reflection=10.0, rim=(60, 30, 150)),
    "sunset": Palette(  # yellow wax in red liquid, on black
        background_top=(3, 1, 1), background_bottom=(7, 3, 2), glow=(70, 16, 4),
        liquid_top=(105, 8, 6), liquid_bottom=(235, 70, 18),
        wax_cool=(255, 150, 25), wax_hot=(255, 240, 125), metal=(56, 48, 44),
        glass=Glass(bottom=0.35, top=0.21, bulge=0.02), reflection=10.0, rim=(110, 30, 25)),
    "bluelamp": Palette(  # dark purple wax in blue liquid, in front of a pale wall
        background_top=(198, 199, 195), background_bottom=(180, 181, 177), glow=(0, 0, 0),
        liquid_top=(16, 72, 140), liquid_bottom=(42, 118, 185),
        wax_cool=(22, 12, 42), wax_hot=(48, 30, 95), metal=(40, 42, 50),
        glass=Glass(bottom=0.21, top=0.15, bulge=0.05), reflection=130.0, rim=(30, 70, 110)),
    "emerald": Palette(  # green wax in golden liquid, on black
        background_top=(1, 2, 1), background_bottom=(4, 5, 3), glow=(40, 48, 10),
        liquid_top=(110, 95, 20), liquid_bottom=(240, 215, 100),
        wax_cool=(30, 165, 55), wax_hot=(165, 240, 85), metal=(50, 54, 50),
        glass=Glass(bottom=0.34, top=0.2, bulge=0.03), reflection=14.0, rim=(70, 70, 20)),
}


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Everything that shapes a simulated lamp except the seed."""

    frame_size: int = 64
    """Width and height of the square frames in pixels: 64, 128 or 256."""
    fps: float = 30.0
    """Frames per second of simulated time; each frame advances the physics by 1/fps seconds."""
    palette: str | None = None
    """Colour scheme (a key of PALETTES); None picks one from the seed."""
    n_blobs: int = 10
    """Free wax blobs at the start (the pool at the bottom holds the rest of the wax); narrower
    bottles start with proportionally fewer."""
    max_blobs: int = 20
    """Most free blobs at once; the pool stops releasing wax and blobs stop splitting at this count."""
    speed: float = 1.0
    """Multiplier on all physical rates (1.0 moves like a real lamp: a blob crosses it in 10-40 s)."""
    edge_px: float = 1.2
    """Width of the soft wax edge in pixels."""
    grain: float = 1.2
    """Standard deviation of the fixed sensor-like grain added to every frame (0..255 units)."""
    warmup_s: float = 60.0
    """Seconds of lamp time simulated (not rendered) before the first frame, so it starts in full swing."""

    def __post_init__(self) -> None:
        check_frame_size(self.frame_size)
        if not 1.0 <= self.fps <= 240.0:
            raise ValueError(f"fps must be in 1..240, got {self.fps}")
        if self.palette is not None and self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {sorted(PALETTES)}, got {self.palette!r}")
        if not 1 <= self.n_blobs <= self.max_blobs <= 64:
            raise ValueError(f"need 1 <= n_blobs <= max_blobs <= 64, got {self.n_blobs}, {self.max_blobs}")
        if not 0.05 <= self.speed <= 20.0:
            raise ValueError(f"speed must be in 0.05..20, got {self.speed}")
        if self.edge_px <= 0 or self.grain < 0:
            raise ValueError("edge_px must be > 0 and grain >= 0")
        if not 0.0 <= self.warmup_s <= 3600.0:
            raise ValueError(f"warmup_s must be in 0..3600, got {self.warmup_s}")


@dataclass
class Blobs:
    """The state of the free wax blobs, one entry per blob (lamp units, seconds)."""

    x: np.ndarray
    """Horizontal position of the centre, 0 on the lamp axis."""
    y: np.ndarray
    """Height of the centre above the bottom of the glass (the glass is 1 tall)."""
    vx: np.ndarray
    """Horizontal velocity (lamp units per second)."""
    vy: np.ndarray
    """Vertical velocity, positive upwards (lamp units per second)."""
    radius: np.ndarray
    """Radius of the sphere of wax the blob holds (lamp units)."""
    temperature: np.ndarray
    """0 cold (sinks) .. 1 hot (rises); neutral buoyancy at 0.5."""
    grow_to: np.ndarray
    """Target radius while a blob is still being drawn out of the pool, else equal to radius."""
    lobe_angle: np.ndarray
    """Direction (radians) of the axis through the blob's two lobes: blobs are not perfect discs."""
    lobe_spin: np.ndarray
    """Turning rate of the lobe axis (radians per second): the blob slowly changes shape."""
    lobe_offset: np.ndarray
    """Distance of each lobe from the blob centre, as a fraction of its radius (0 = round)."""

    def take(self, keep: np.ndarray) -> "Blobs":
        """The blobs selected by a boolean mask or index array."""
        return Blobs(*(getattr(self, f)[keep] for f in self.fields()))

    @staticmethod
    def fields() -> tuple[str, ...]:
        """Names of the per-blob arrays, in constructor order."""
        return ("x", "y", "vx", "vy", "radius", "temperature", "grow_to",
                "lobe_angle", "lobe_spin", "lobe_offset")

    def append(self, **values: float) -> "Blobs":
        """These blobs plus one more, given every field by name."""
        return Blobs(*(np.append(getattr(self, f), values[f]) for f in self.fields()))

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class _Physics:
    """Rates of the blob dynamics (per second, lamp units)."""

    rise_speed: float = 0.07
    """Terminal speed of a reference blob (radius 0.07) at full temperature excess."""
    velocity_tau_s: float = 1.2
    """Time for a blob's velocity to settle to its terminal value (viscous liquid)."""
    heat_rate: float = 0.22
    """Heating rate of wax touching the hot zone above the bulb."""
    cool_rate: float = 0.02
    """Cooling rate of a reference blob in the middle of the lamp."""
    top_cool_rate: float = 0.03
    """Extra cooling rate right under the cap."""
    release_temperature: float = 0.8
    """Wax resting on the pool stays there until it is this warm (it sticks, then lets go)."""
    heat_zone: float = 0.09
    """Height above the pool surface within which blobs are heated."""
    temp_noise: float = 0.03
    """Random temperature kicks (per sqrt-second): uneven heating keeps the lamp from repeating."""
    drift_noise: float = 0.006
    """Random sideways drift speed (per sqrt-second)."""
    spawn_rate: float = 0.06
    """Blobs released per second by a full pool."""
    grow_time_s: float = 6.0
    """Time for a new blob to bulge out of the pool to full size."""
    merge_rate: float = 0.06
    """Chance per second that two overlapping blobs fuse."""
    split_rate: float = 0.04
    """Chance per second that a warm blob of split_radius splits in two (rising as radius^6)."""
    split_radius: float = 0.1
    """Blobs larger than this may split (lamp units; scaled down with the blobs in narrow bottles)."""
    absorb_rate: float = 0.12
    """Chance per second that a cold blob resting on the pool melts back into it."""
    pool_level_min: float = 0.05
    """Lowest level of the pool surface: below it the pool releases no more blobs."""
    pool_level_max: float = 0.16
    """Highest level of the pool surface: above it sinking blobs are not melted back in."""
    ref_radius: float = 0.07
    """Radius of the reference blob the size-dependent rates are quoted for."""


class LavaLampSimulator:
    """A running lava lamp: call frames(n) repeatedly for successive frames of one endless clip.

    Public state: `palette_name`, `glass`, `blobs` (the free blobs, lamp units: the glass is 1 tall,
    y up from its bottom), `time_s` (seconds of clip since the first frame) and `frame_index`.
    """

    def __init__(self, *, config: SimulatorConfig = SimulatorConfig(), seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        names = sorted(PALETTES)
        self.palette_name = config.palette or names[int(self._rng.integers(len(names)))]
        self.glass = PALETTES[self.palette_name].glass
        self._phys = _Physics()
        self._wax_scale = min(1.0, self.glass.bottom / 0.34)  # narrow bottles: smaller, fewer blobs
        self.time_s = 0.0
        self.frame_index = 0
        self._clock_s = 0.0  # physics time, which runs `speed` times faster than the clip
        self._pool_level = 0.1
        self._ripple_phase = self._rng.uniform(0, 2 * np.pi, size=3)
        self.blobs = self._initial_blobs(max(2, round(config.n_blobs * self._wax_scale)))
        self._advance(config.warmup_s, max_step_s=WARMUP_STEP_S)
        self.time_s = 0.0
        self._renderer = _Renderer(config=config, palette=PALETTES[self.palette_name],
                                   rng=np.random.default_rng([seed, 1]))

    # ---- public -------------------------------------------------------------------------------
    def frames(self, n: int) -> np.ndarray:
        """The next n frames, (n, S, S, 3) uint8 RGB; the physics advances 1/fps per frame."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        s = self.config.frame_size
        out = np.empty((n, s, s, 3), dtype=np.uint8)
        for i in range(n):
            self._advance(1.0 / self.config.fps)
            self._renderer.render(self.blobs, self._pool_level, self._pool_surface, out[i])
            self.frame_index += 1
        return out

    def skip(self, seconds: float) -> None:
        """Run the lamp for `seconds` of clip time without rendering (fast-forward)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        frames = int(round(seconds * self.config.fps))
        for _ in range(frames):
            self._advance(1.0 / self.config.fps)
        self.frame_index += frames

    def iter_chunks(self, n: int, chunk: int = 256) -> Iterator[np.ndarray]:
        """n frames in chunks of at most `chunk`, so long clips never sit in memory whole."""
        done = 0
        while done < n:
            k = min(chunk, n - done)
            yield self.frames(k)
            done += k

    # ---- physics ------------------------------------------------------------------------------
    def _initial_blobs(self, n: int) -> Blobs:
        """n blobs of mixed sizes scattered through the upper part of the lamp."""
        rng = self._rng
        radius = self._wax_scale * np.exp(rng.uniform(np.log(0.035), np.log(0.13), size=n))
        y = rng.uniform(0.2, 0.9, size=n)
        x = rng.uniform(-1, 1, size=n) * (self.glass.half_width(y) - radius) * 0.8
        temperature = rng.uniform(0.3, 0.7, size=n)
        zeros = np.zeros(n)
        lobes = _random_lobes(rng, n)
        return Blobs(x, y, zeros.copy(), zeros.copy(), radius, temperature, radius.copy(), *lobes)

    def _advance(self, dt: float, max_step_s: float = MAX_PHYSICS_STEP_S) -> None:
        """Advance the clip by dt seconds: dt * speed of physics in equal steps of at most max_step_s."""
        physics_s = dt * self.config.speed
        steps = max(1, int(np.ceil(physics_s / max_step_s)))
        h = physics_s / steps
        for _ in range(steps):
            self._step(h)
            self._clock_s += h
        self.time_s += dt

    def _step(self, dt: float) -> None:
        """One physics step of dt seconds of physics time."""
        self._heat_and_cool(dt)
        self._move(dt)
        self._morph(dt)
        self._grow(dt)
        self._events(dt)

    def _heat_and_cool(self, dt: float) -> None:
        """Wax near the pool heats up, everywhere it cools (faster under the cap); small blobs
        change temperature faster than big ones."""
        p, b = self._phys, self.blobs
        size = b.radius / p.ref_radius
        bottom = b.y - b.radius - self._pool_level
        heating = p.heat_rate * np.clip(1.0 - bottom / p.heat_zone, 0.0, 1.0) / np.sqrt(size)
        near_top = np.clip((b.y + b.radius - 0.78) / 0.2, 0.0, 1.0)
        cooling = (p.cool_rate + p.top_cool_rate * near_top) / np.sqrt(size)
        noise = p.temp_noise * np.sqrt(dt) * self._rng.standard_normal(len(b))
        b.temperature += dt * (heating * (1.1 - b.temperature) - cooling * (b.temperature + 0.1)) + noise
        np.clip(b.temperature, 0.0, 1.0, out=b.temperature)

    def _move(self, dt: float) -> None:
        """Velocities relax towards buoyant terminal speed plus contact pushes, then blobs move."""
        p, b = self._phys, self.blobs
        size = b.radius / p.ref_radius
        target_vy = p.rise_speed * size ** 0.8 * np.tanh(3.0 * (b.temperature - 0.5))
        growing = b.grow_to > b.radius + 1e-6
        on_pool = b.y - b.radius < self._pool_level + 0.02
        stuck = growing | (on_pool & (b.temperature < p.release_temperature))
        target_vy = np.where(stuck, np.minimum(target_vy, 0.0), target_vy)
        push_x, push_y = self._contact_push(b)
        relax = dt / p.velocity_tau_s
        b.vx += relax * (push_x - b.vx) + p.drift_noise * np.sqrt(dt) * self._rng.standard_normal(len(b))
        b.vy += relax * (target_vy + push_y - b.vy)
        b.x += b.vx * dt
        b.y += b.vy * dt
        self._confine(b)

    def _morph(self, dt: float) -> None:
        """The lobes turn and drift apart or together: blobs slowly change shape as they go."""
        b = self.blobs
        b.lobe_angle += b.lobe_spin * dt
        kick = 0.03 * np.sqrt(dt) * self._rng.standard_normal(len(b))
        b.lobe_offset = np.clip(b.lobe_offset + dt * 0.05 * (0.22 - b.lobe_offset) + kick, 0.0, 0.45)

    def _contact_push(self, b: Blobs) -> tuple[np.ndarray, np.ndarray]:
        """Soft repulsion between overlapping blobs (speeds, lamp units per second)."""
        dx = b.x[:, None] - b.x[None, :]
        dy = b.y[:, None] - b.y[None, :]
        dist = np.sqrt(dx * dx + dy * dy) + 1e-9
        reach = 0.9 * (b.radius[:, None] + b.radius[None, :])
        overlap = np.clip(1.0 - dist / reach, 0.0, None)
        np.fill_diagonal(overlap, 0.0)
        strength = 0.03 * overlap / dist
        return (strength * dx).sum(axis=1), (strength * dy).sum(axis=1)

    def _confine(self, b: Blobs) -> None:
        """Keep blobs inside the glass: squashed a little against the walls, cap and pool."""
        limit = np.maximum(self.glass.half_width(b.y) - 0.85 * b.radius, 0.0)
        hit = np.abs(b.x) > limit
        b.x = np.clip(b.x, -limit, limit)
        b.vx = np.where(hit, -0.3 * b.vx, b.vx)
        top = 0.99 - 0.8 * b.radius
        floor = self._pool_level - 0.2 * b.radius
        b.vy = np.where((b.y > top) & (b.vy > 0), 0.0, b.vy)
        b.vy = np.where((b.y < floor) & (b.vy < 0), 0.0, b.vy)
        b.y = np.clip(b.y, floor, top)

    def _grow(self, dt: float) -> None:
        """New blobs bulge out of the pool, taking their wax from it."""
        b, p = self.blobs, self._phys
        growing = b.grow_to > b.radius
        if not growing.any():
            return
        new_r = np.minimum(b.grow_to, b.radius + dt * b.grow_to / p.grow_time_s)
        self._pool_level -= float(np.sum(self._pool_rise(new_r ** 3 - b.radius ** 3)))
        b.radius = np.where(growing, new_r, b.radius)

    def _events(self, dt: float) -> None:
        """Random discrete events: fusing, splitting, melting into and rising out of the pool."""
        self._maybe_merge(dt)
        self._maybe_split(dt)
        self._maybe_absorb(dt)
        self._maybe_spawn(dt)
        self._pool_level = float(np.clip(self._pool_level, self._phys.pool_level_min,
                                          self._phys.pool_level_max))

    def _maybe_merge(self, dt: float) -> None:
        """Two blobs pressed well into each other now and then fuse into one."""
        b = self.blobs
        if len(b) < 2:
            return
        dx = b.x[:, None] - b.x[None, :]
        dy = b.y[:, None] - b.y[None, :]
        close = np.hypot(dx, dy) < 0.55 * (b.radius[:, None] + b.radius[None, :])
        close &= np.triu(np.ones_like(close), k=1)
        pairs = np.argwhere(close)
        if len(pairs) == 0 or self._rng.random() > self._phys.merge_rate * dt * len(pairs):
            return
        i, j = pairs[int(self._rng.integers(len(pairs)))]
        self.blobs = _fuse(b, int(i), int(j))

    def _maybe_split(self, dt: float) -> None:
        """Big warm blobs pinch in two, the bigger the likelier (no blob grows without bound)."""
        b = self.blobs
        excess = b.radius / (self._phys.split_radius * self._wax_scale)
        chance = np.where((excess > 1.0) & (b.temperature > 0.5) & (b.grow_to <= b.radius),
                          self._phys.split_rate * excess ** 6 * dt, 0.0)
        if len(b) >= self.config.max_blobs or self._rng.random() > chance.sum():
            return
        i = int(self._rng.choice(len(b), p=chance / chance.sum()))
        self.blobs = _split(b, i, self._rng)

    def _maybe_absorb(self, dt: float) -> None:
        """A cold blob resting on the pool now and then melts back into it."""
        b = self.blobs
        resting = (b.y - b.radius < self._pool_level + 0.01) & (b.temperature < 0.45) & (b.vy <= 0)
        chance = self._phys.absorb_rate * dt * resting.sum()
        if len(b) <= 1 or not resting.any() or self._rng.random() > chance:
            return
        i = int(self._rng.choice(np.flatnonzero(resting)))
        rise = float(self._pool_rise(b.radius[i] ** 3))
        if self._pool_level + rise <= self._phys.pool_level_max:
            self._pool_level += rise
            self.blobs = b.take(np.arange(len(b)) != i)

    def _maybe_spawn(self, dt: float) -> None:
        """A new blob starts to bulge out of the pool, more often the fuller the pool."""
        p = self._phys
        fullness = (self._pool_level - p.pool_level_min) / (p.pool_level_max - p.pool_level_min)
        few = len(self.blobs) < max(3, self.config.max_blobs // 3)
        rate = p.spawn_rate * (fullness + (1.0 if few else 0.0))
        if len(self.blobs) >= self.config.max_blobs or self._rng.random() > rate * dt:
            return
        r = self._wax_scale * float(np.exp(self._rng.uniform(np.log(0.04), np.log(0.13))))
        if self._pool_level - self._pool_rise(r ** 3) < p.pool_level_min:
            return  # the pool has too little wax left for this blob
        x = float(self._rng.uniform(-1, 1) * (self.glass.half_width(self._pool_level) - r) * 0.7)
        angle, spin, offset = _random_lobes(self._rng, 1)
        self.blobs = self.blobs.append(x=x, y=self._pool_level - 0.2 * r, vx=0.0, vy=0.0,
                                       radius=0.3 * r, temperature=0.5, grow_to=r,
                                       lobe_angle=angle[0], lobe_spin=spin[0], lobe_offset=offset[0])

    def _pool_rise(self, volume: np.ndarray | float) -> np.ndarray | float:
        """Rise of the pool level when a sphere of radius^3 = volume melts into it."""
        return volume / (0.5 * self.glass.bottom ** 2)

    def _pool_surface(self, x: np.ndarray) -> np.ndarray:
        """Height of the wax pool surface along x: a level with slow, small undulations."""
        t, ph = self._clock_s, self._ripple_phase
        ripple = (np.sin(6.0 * x + 0.11 * t + ph[0]) + 0.5 * np.sin(13.0 * x - 0.19 * t + ph[1])
                  + 0.7 * np.sin(3.0 * x + 0.07 * t + ph[2]))
        dome = 1.0 / 3.0 - (x / self.glass.bottom) ** 2  # mean zero across the base
        return self._pool_level + 0.015 * ripple + 0.05 * dome




def _fuse(b: Blobs, i: int, j: int) -> Blobs:
    """Blob i swallows blob j, conserving volume and momentum."""
    wi, wj = b.radius[i] ** 3, b.radius[j] ** 3
    w = wi + wj
    for name in ("x", "y", "vx", "vy", "temperature"):
        arr = getattr(b, name)
        arr[i] = (arr[i] * wi + arr[j] * wj) / w
    b.radius[i] = w ** (1.0 / 3.0)
    b.grow_to[i] = max(b.grow_to[i] ** 3 + b.grow_to[j] ** 3, w) ** (1.0 / 3.0)
    return b.take(np.arange(len(b)) != j)


def _split(b: Blobs, i: int, rng: np.random.Generator) -> Blobs:
    """Blob i pinches into two halves stacked roughly vertically; the upper one is warmer."""
    r = b.radius[i] / 2 ** (1.0 / 3.0)
    angle = rng.normal(0.0, 0.4)
    ox, oy = 0.55 * r * np.sin(angle), 0.55 * r * np.cos(angle)
    x, y, vx, vy, t = b.x[i], b.y[i], b.vx[i], b.vy[i], b.temperature[i]
    b.x[i], b.y[i], b.radius[i], b.grow_to[i] = x - ox, y - oy, r, r
    b.temperature[i] = max(t - 0.05, 0.0)
    angle, spin, offset = _random_lobes(rng, 1)
    return b.append(x=x + ox, y=y + oy, vx=vx, vy=vy + 0.01, radius=r,
                    temperature=min(t + 0.05, 1.0), grow_to=r,
                    lobe_angle=angle[0], lobe_spin=spin[0], lobe_offset=offset[0])


def _random_lobes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lobe axis angle, spin and offset for n new blobs."""
    return rng.uniform(0, 2 * np.pi, n), rng.normal(0.0, 0.08, n), rng.uniform(0.05, 0.4, n)


class _Renderer:
    """Draws blobs into frames: static lamp layers precomputed once, the wax field per frame."""

    def __init__(self, *, config: SimulatorConfig, palette: Palette, rng: np.random.Generator) -> None:
        s = config.frame_size
        scale = (GLASS_BOTTOM_FRAME - GLASS_TOP_FRAME) * s  # pixels per lamp unit
        cols = (np.arange(s) + 0.5 - s / 2) / scale
        rows = (GLASS_BOTTOM_FRAME * s - (np.arange(s) + 0.5)) / scale
        lx, ly = np.meshgrid(cols, rows)
        glass = palette.glass
        coverage = _glass_coverage(glass, lx, ly, 1.0 / scale)
        self.index = np.flatnonzero(coverage.ravel() > 0)
        self.px = lx.ravel()[self.index].astype(np.float32)
        self.py = ly.ravel()[self.index].astype(np.float32)
        self.edge_field = np.float32(4.0 * config.edge_px / scale / 0.07)  # field drop over edge_px
        vignette = _vignette(s)
        grain = rng.normal(0.0, config.grain, size=(s, s, 3))
        background = _background(glass, lx, ly, palette) * vignette[..., None]
        self.static = np.clip(background + grain + 0.5, 0, 255).astype(np.uint8)
        cov = coverage.ravel()[self.index][:, None]
        gain = cov * vignette.ravel()[self.index][:, None]
        liquid, wax_cool, wax_hot, self.hot = _interior(glass, self.px, self.py, palette)
        shine = _glass_highlights(glass, self.px, self.py, palette)
        self.base = (background.reshape(-1, 3)[self.index] * (1 - cov) + (liquid + shine) * gain
                     + grain.reshape(-1, 3)[self.index]).astype(np.float32)
        self.liquid_gain = (liquid * gain).astype(np.float32)
        self.wax_cool_gain = (wax_cool * gain).astype(np.float32)
        self.wax_hot_gain = ((wax_hot - wax_cool) * gain).astype(np.float32)

    def render(self, blobs: Blobs, pool_level: float, pool_surface, out: np.ndarray) -> None:
        """Draw one frame into out (S, S, 3) uint8."""
        field, heat, lit = self._field(blobs, pool_level, pool_surface)
        alpha = np.clip((field - 1.0) / self.edge_field + 0.5, 0.0, 1.0)
        alpha = alpha * alpha * (3.0 - 2.0 * alpha)
        core = np.sqrt(np.clip(1.0 - 1.0 / np.maximum(field, 1e-3), 0.0, 1.0))
        shade = (0.66 + 0.4 * core) * (1.0 + 0.3 * lit)
        mix = np.clip(self.hot + 0.6 * (heat - 0.5), 0.0, 1.0)
        wax = self.wax_cool_gain + mix[:, None] * self.wax_hot_gain
        pixels = self.base + alpha[:, None] * (shade[:, None] * wax - self.liquid_gain)
        out[...] = self.static
        out.reshape(-1, 3)[self.index] = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)

    def _field(self, blobs: Blobs, pool_level: float, pool_surface) -> tuple[np.ndarray, ...]:
        """Per glass pixel: the metaball field (1 on the wax surface, above 1 inside), the
        temperature of the wax there and how far below its blob's centre it lies (-1..1)."""
        level = pool_surface(self.px).astype(np.float32)
        pool = np.exp(np.minimum((level - self.py) / np.float32(0.012), 30.0))
        if len(blobs) == 0:
            return pool, np.ones_like(pool), np.ones_like(pool)
        x, y, radius, stretch, temperature = _lobes(blobs, pool_level)  # each (m, 1)
        dx = (self.px[None, :] - x) * np.sqrt(stretch)
        below = y - self.py[None, :]  # (m, P)
        dy = below / stretch
        q = radius * radius / (dx * dx + dy * dy + np.float32(1e-6))
        w = q * q  # (m, P): each metaball's share of the field
        field = pool + w.sum(axis=0)
        heat = (pool + (w * temperature).sum(axis=0)) / field
        lit = (pool + (w * np.clip(below / radius, -1.0, 1.0)).sum(axis=0)) / field
        return field, heat, lit


def _lobes(b: Blobs, pool_level: float) -> tuple[np.ndarray, ...]:
    """The metaballs that draw the blobs: two overlapping lobes per blob, plus a thinning stalk
    under each blob that has just left the pool. Returns centres, radii, vertical stretch (moving
    blobs are drawn out along their path) and temperature, as float32 columns of length m."""
    reach = b.lobe_offset * b.radius
    ox, oy = reach * np.cos(b.lobe_angle), reach * np.sin(b.lobe_angle)
    radius = b.radius * (1.0 - 0.4 * b.lobe_offset)
    stretch = 1.0 + 0.45 * np.tanh(np.abs(b.vy) / 0.05)
    gap = b.y - b.radius - pool_level
    stalk = (b.vy > 0) & (gap > 0) & (gap < STALK_LENGTH)
    stalk_radius = 0.4 * b.radius[stalk] * (1.0 - gap[stalk] / STALK_LENGTH)
    columns = (np.concatenate([b.x + ox, b.x - ox, b.x[stalk]]),
               np.concatenate([b.y + oy, b.y - oy, pool_level + 0.5 * gap[stalk]]),
               np.concatenate([radius, radius, stalk_radius]),
               np.concatenate([stretch, stretch, 1.0 + gap[stalk] / (2.0 * b.radius[stalk])]),
               np.concatenate([b.temperature, b.temperature, b.temperature[stalk]]))
    return tuple(c.astype(np.float32)[:, None] for c in columns)


def _glass_coverage(glass: Glass, lx: np.ndarray, ly: np.ndarray, pixel: float) -> np.ndarray:
    """Fraction of each pixel inside the glass (anti-aliased over about one pixel)."""
    side = np.clip((glass.half_width(ly) - np.abs(lx)) / pixel + 0.5, 0.0, 1.0)
    vertical = np.clip(ly / pixel + 0.5, 0.0, 1.0) * np.clip((1.0 - ly) / pixel + 0.5, 0.0, 1.0)
    return side * vertical


def _vignette(s: int) -> np.ndarray:
    """Slight darkening towards the corners, like a camera lens."""
    u = (np.arange(s) + 0.5) / s * 2 - 1
    return 1.0 - 0.11 * (u[None, :] ** 2 + u[:, None] ** 2)


def _background(glass: Glass, lx: np.ndarray, ly: np.ndarray, palette: Palette) -> np.ndarray:
    """Background, halo, metal cap and base: everything outside the glass, which never moves."""
    t = np.clip((ly + 0.2) / 1.4, 0.0, 1.0)[..., None]
    bg = np.array(palette.background_bottom) * (1 - t) + np.array(palette.background_top) * t
    gap = (np.maximum(np.abs(lx) - glass.half_width(ly), 0.0) + np.maximum(-ly, 0.0)
           + np.maximum(ly - 1.0, 0.0))
    halo = np.exp(-gap / 0.07) * (0.4 + 0.6 * np.exp(-np.clip(ly, 0, 1) / 0.35))
    bg = bg + 0.5 * np.array(palette.glow) * halo[..., None]
    metal = _metal(glass, lx, ly, palette)
    return metal[..., :3] * metal[..., 3:] + bg * (1 - metal[..., 3:])


def _metal(glass: Glass, lx: np.ndarray, ly: np.ndarray, palette: Palette) -> np.ndarray:
    """RGBA of the cap (a cone above the glass) and the base (a cone widening below it)."""
    cap_half = glass.top + 0.01 - 0.3 * np.clip(ly - 1.0, 0.0, None)
    base_half = glass.bottom - 0.02 + 0.35 * np.clip(-ly, 0.0, None)
    half = np.where(ly > 0.5, cap_half, base_half)
    inside = ((ly > 1.0) | (ly < 0.0)) & (np.abs(lx) < half)
    u = np.clip(lx / np.maximum(half, 1e-3), -1.0, 1.0)
    # brushed metal on a cylinder: a dull body, a soft highlight left of the axis, darker rims
    light = 0.3 + 0.6 * np.exp(-((u + 0.4) / 0.22) ** 2) + 0.3 * (1 - u * u)
    near_glass = np.exp(-np.minimum(np.abs(ly), np.abs(ly - 1.0)) / 0.04)
    rgb = np.array(palette.metal) * light[..., None] + 0.6 * np.array(palette.glow) * near_glass[..., None]
    edge = np.clip((half - np.abs(lx)) * 200.0, 0.0, 1.0)
    return np.concatenate([rgb, (inside * edge)[..., None]], axis=-1)


def _interior(glass: Glass, px: np.ndarray, py: np.ndarray, palette: Palette):
    """Per glass pixel: liquid colour, cool and hot wax colours (float RGB) lit by the bulb below,
    and how much the bulb tints the wax towards its hot colour (0..1)."""
    u = np.clip(px / glass.half_width(py), -1.0, 1.0)
    depth = np.sqrt(1.0 - 0.85 * u * u)[:, None]  # a cylinder of liquid is thicker on its axis
    from_bulb = np.hypot(1.5 * px, py + 0.03)  # the bulb shines up through the base centre
    bulb = np.exp(-from_bulb / 0.3)[:, None]
    liquid = np.array(palette.liquid_top) * (1 - bulb) + np.array(palette.liquid_bottom) * bulb
    liquid = liquid * (0.7 + 0.35 * depth)
    light = ((0.8 + 0.25 * depth) * (0.88 + 0.12 * (1 - py[:, None])))
    wax_cool = np.array(palette.wax_cool, dtype=np.float64) * light
    wax_hot = np.array(palette.wax_hot, dtype=np.float64) * light
    return liquid, wax_cool, wax_hot, np.exp(-from_bulb / 0.16).astype(np.float32)


def _glass_highlights(glass: Glass, px: np.ndarray, py: np.ndarray, palette: Palette) -> np.ndarray:
    """A vertical window reflection left of the axis and brighter rims where the glass curves away."""
    u = px / glass.half_width(py)
    along = np.clip((py - 0.12) / 0.15, 0.0, 1.0) * np.clip((0.9 - py) / 0.15, 0.0, 1.0)
    stripe = np.exp(-((u + 0.5) / 0.06) ** 2) * along
    rim = np.exp(-(1.0 - np.abs(u)) / 0.05)
    return palette.reflection * stripe[:, None] + rim[:, None] * np.array(palette.rim)


def simulate(frames: int, *, seed: int, size: int = 64, fps: float = 30.0,
             palette: str | None = None) -> np.ndarray:
    """`frames` successive frames (T, size, size, 3) uint8 of a lamp started from `seed`."""
    config = SimulatorConfig(frame_size=size, fps=fps, palette=palette)
    return LavaLampSimulator(config=config, seed=seed).frames(frames)
