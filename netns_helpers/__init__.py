"""Network namespace helpers; pyroute2 is imported only inside submodules."""
