# Paitho: `make up` runs the platform, `make test` runs the tests. Both bootstrap first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: bootstrap up test check lint format typecheck bench clean

bootstrap:
	@infra/local/bootstrap.sh

up: bootstrap
	@$(BIN)/paitho up

test: bootstrap
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: bootstrap
	@$(BIN)/ruff format --check .
	@$(BIN)/ruff check .

typecheck: bootstrap
	@$(BIN)/mypy

check: lint typecheck test

format: bootstrap
	@$(BIN)/ruff format .
	@$(BIN)/ruff check --fix .

bench: bootstrap
	@$(BIN)/python -m bench

clean:
	rm -rf .paitho .pytest_cache .mypy_cache .ruff_cache
