"""Launchers: one interface (base.Launcher), two implementations (local processes, AWS ECS)."""
