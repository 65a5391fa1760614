"""Infrastructure every layer may use, which knows no component and no model kind:

    errors.py        the exception types, each a one-line message with the fix
    registry.py      one registry per component kind: names, config choices, capabilities
    interface.py     the model interface generic code relies on, and its capability checks
    traces.py        Pyro trace utilities below training and evaluation
    memory.py        memory and work budgets, checked before anything large is allocated
    sizes.py         counting a module's numbers before building it (the meta device)
    files.py         atomic writes, writable folders
    rng.py           seeded random state
    distributed/     torchrun data-parallel context
"""
