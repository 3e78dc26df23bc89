"""Training rounds: settings (config), the state machine (services), the stage runner (runner,
stages), API and pages."""
