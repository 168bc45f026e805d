"""Corrections of faust-streaming defects, each a leaf module whose docstring names the defect and the test that
measured it. They import nothing of the project."""
