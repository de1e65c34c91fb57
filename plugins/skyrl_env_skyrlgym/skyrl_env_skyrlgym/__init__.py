"""skyrl-env-skyrlgym: every environment of skyrl-gym's registry, selectable as
``skyrl-env-skyrlgym:<SkyRL id>`` (e.g. ``skyrl-env-skyrlgym:gsm8k``). See docs/skyrl_gym.md."""
