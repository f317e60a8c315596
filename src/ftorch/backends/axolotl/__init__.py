"""provider=axolotl: Axolotl in its own environment (.venv-axolotl): the translation of a run to axolotl.yaml
(config.py), the backend that drives it (backend.py) and child.py, which runs there by path and never imports ftorch."""
