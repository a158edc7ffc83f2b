"""KFP pipeline wiring, compilation, local runs and cloud submission."""
