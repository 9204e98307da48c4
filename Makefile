# Development tasks. `make help` lists them; README.md ("Development") explains the test tiers.
GO ?= go
SHELL := bash

.PHONY: help test test-all lint bench bench-sync bench-http

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-11s %s\n", $$1, $$2}'

test: ## go test ./...: quick, skips what needs Dovecot, Cyrus, PostgreSQL or Chromium, and lists each skip with its reason
	@set -o pipefail; $(GO) test -json ./... | $(GO) run ./scripts/testsummary

test-all: ## the full run (scripts/test.sh, what CI runs): provisions the host, runs everything, fails on any skip
	scripts/test.sh

lint: ## scripts/lint.sh
	scripts/lint.sh

bench: ## the Go benchmarks, once each (those needing Dovecot skip without it)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

bench-sync: ## bench/syncbench against mbsync and raw IMAP (as root, after scripts/provision.sh)
	scripts/provision.sh
	$(GO) run ./bench/syncbench

bench-http: ## bench/httpload, the HTTP API under load
	$(GO) run ./bench/httpload
