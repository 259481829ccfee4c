"""The ground floor: what every wing may use, and the guarantees every entry point passes through.

May import: nothing of the package.
"""
