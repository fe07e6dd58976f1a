"""The consumer contract every service's consumer must keep (arroyo's shared contract tests).

A service joins the suite by adding one `ContractCase` to `cases.CASES`.
"""
