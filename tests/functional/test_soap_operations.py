"""The operation table both API faces are built from."""

from __future__ import annotations

import inspect

from soap.operations import OPERATIONS


def test_every_operation_names_its_functions_parameters_in_order() -> None:
    """Parameters reach the functions by name, so the table and the signatures agree."""
    for operation in OPERATIONS:
        signature = inspect.signature(operation.function)
        keyword_only = [name for name, parameter in signature.parameters.items()
                        if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
        assert keyword_only == [param.name for param in operation.params], operation.name
        assert operation.doc, operation.name


def test_operation_names_are_the_contracts() -> None:
    """31 operations, 8 of them for admins only, each name once."""
    names = [operation.name for operation in OPERATIONS]
    assert len(names) == len(set(names)) == 31
    assert sum(operation.admin_only for operation in OPERATIONS) == 8
