"""The web UI and JSON API (``unet-serve``): segment an uploaded slice, score it with Dice."""
