"""Developer entry points behind `make run` and `make test`: embedded services and process startup."""
