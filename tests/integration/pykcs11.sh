#!/bin/bash
# tests/integration/pykcs11.sh: runs pykcs11_test.py (PyKCS11 from Debian, /usr/bin/python3) against
# the built module: phase "main" sets up a token and exercises it, phase "reopen" is a fresh process
# that finds the token key again. PINs reach Python through the environment, never the command line.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$(dirname "$0")/lib.sh"
[ -x "$PYTHON" ] || skip "$PYTHON is not installed"
"$PYTHON" -c 'import PyKCS11' 2>/dev/null || skip "python3-pykcs11 is not installed"

export IT_SO_PIN=$SO_PIN IT_USER_PIN=$USER_PIN IT_WRONG_PIN=$WRONG_PIN IT_REFERENCE
export IT_LABEL="it-pykcs11-$$" IT_STATE=$IT_TMP/state.json

run "$PYTHON" "$IT_DIR/pykcs11_test.py" main
expect '^ok   - GCM decrypt with a different AAD' "the main phase ran to its end"
run "$PYTHON" "$IT_DIR/pykcs11_test.py" reopen
expect '^ok   - the reopened KEK unwraps the DEK' "the reopen phase ran to its end"
log "all PyKCS11 checks passed"
