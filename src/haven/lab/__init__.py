"""The lab: real OpenStack services and emulators that haven installs and runs on loopback."""
