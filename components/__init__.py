"""edgeship pipeline steps: each <step>/core.py holds the logic, <step>/component.py the KFP interface."""
