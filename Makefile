# paceline — see README.md.
GO ?= go
PKGS := ./...

.PHONY: build test test-short vet fmt fuzz bench-failover demo clean

build:
	$(GO) build -o bin/paceline ./cmd/paceline

# The test command (README, CI): vet, formatting, and every test with the
# race detector. Lab (network-namespace) tests run when root, else skip.
test: vet fmt
	$(GO) test -race -timeout 40m $(PKGS)
	cd api && $(GO) test -race ./...

test-short:
	$(GO) test -short $(PKGS)

vet:
	$(GO) vet $(PKGS)
	cd api && $(GO) vet ./...

fmt:
	@out=$$(gofmt -l cmd internal api tests bench 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Short fuzz runs of every parser.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/spec/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/config/
	$(GO) test -run '^$$' -fuzz FuzzAPIRequest -fuzztime 30s ./internal/httpapi/
	$(GO) test -run '^$$' -fuzz FuzzLoadPEM -fuzztime 30s ./internal/tlsutil/

bench-failover: build
	$(GO) run ./bench/failover

demo:
	$(GO) run ./cmd/paceline demo

clean:
	rm -rf bin
