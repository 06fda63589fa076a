"""The operators' web dashboard (issue 16), served by ``haven serve`` at /dashboard on the API's address."""
