"""Knowledge distillation: soft-label KL + hard-label CE + optional hint losses."""
