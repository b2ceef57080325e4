"""`python -m gateway.edge`: run the project edge."""

from .app import main

main()
