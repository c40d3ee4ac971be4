"""The package's benchmarks, each run as ``python -m benchmarks.<name>`` from the repository root.

Shared modules: `common` (compared methods, parameter budgets, the machine line, the docs page's marked sections),
`harness` (the measured model, its inputs and the timed training step), `store` (results under
``benchmarks/results/``) and `synthetic_runs` (the training protocol on the synthetic scenes). The other modules are
benchmarks, importing only from these.
"""
