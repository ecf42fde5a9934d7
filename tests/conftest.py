"""Test-suite wide settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Qt must never look for a display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# CI machines are small and shared: no per-example deadline (speed is measured by `./dev bench`).
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")
