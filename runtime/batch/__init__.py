"""Archives: `fer-batch` over folders of photos and videos, resumable, on every core (`run_local`) or on a Ray
cluster (`run_ray`): sources (what is given), task (the one task function), store (the output folder), engines, cli.
"""
