"""JSON-RPC 2.0 framing: error codes, request encoding, response parsing. Plain code, no I/O."""

from __future__ import annotations

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTH_REQUIRED = -32001
AUTH_FAILED = -32002
SCRIPT_ERROR = -32010
