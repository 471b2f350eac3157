"""Model providers behind one interface: ``Provider.generate(request) -> Generation``."""
