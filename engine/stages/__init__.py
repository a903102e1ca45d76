"""Optimisation stages that run inside engine.stage_loop.run_stage."""
