"""Print the parameter count of every MelNetConfig preset, in total and tier by tier (counted arithmetically;
tests/model/test_model_config.py checks the formula against built models)."""

from melnet_fast.config import parameter_table

if __name__ == "__main__":
    print(parameter_table())
