"""Running kaudit: reloading the configuration of a running process."""
