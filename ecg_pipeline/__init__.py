"""ecg-pipeline: from BIOPAC AcqKnowledge recordings to validated ECG windows and trained models.

The package imports nothing heavy at import time; each submodule pulls in what it needs.
"""

__version__ = "0.1.0"
