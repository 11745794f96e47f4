"""Stage 5: models trained with Ray Train, evaluated, swept with Ray Tune."""
