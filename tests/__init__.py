"""Tests of neural-lavalamp, mirroring the source tree."""
