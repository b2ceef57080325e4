"""`python -m services.functions.runtime`: run the functions runtime."""

from .server import main

main()
