import argparse

import pytest

from detect.cli import class_names_arg, parse_class_names


def test_class_lists_from_commas_spaces_and_lists():
    assert parse_class_names("RBC, WBC,Platelets") == ["RBC", "WBC", "Platelets"]
    assert parse_class_names(["a,b", "c"]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="empty"):
        parse_class_names(" , ")
    with pytest.raises(argparse.ArgumentTypeError, match="empty"):
        class_names_arg(",")
