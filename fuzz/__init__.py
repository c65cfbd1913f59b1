"""Coverage-guided fuzz harnesses (atheris) for every parser of untrusted bytes: see runner."""
