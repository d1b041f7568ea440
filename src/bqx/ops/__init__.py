"""Closing the loop: the operator (``bqx ops run``), its lease, retraining triggers and the
evaluation gate. Rollouts themselves live in :mod:`bqx.rollout`."""
