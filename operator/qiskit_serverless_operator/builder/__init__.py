"""The function image builder that runs in a build Job's pod (standard library only)."""
