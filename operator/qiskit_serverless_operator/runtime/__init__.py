"""What runs in the job pod around the user's program (standard library only).

It is copied into the runtime base image on its own, so it must not import the
operator's dependencies.
"""
