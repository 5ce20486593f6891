"""From one run's evidence to findings (catalogue codes) and the fixes that address them."""

from egress_doctor.diagnose.engine import DiagnoseOptions, Diagnosis, diagnose

__all__ = ["DiagnoseOptions", "Diagnosis", "diagnose"]
