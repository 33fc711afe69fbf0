"""sse-ticket's token exchange driven by authlib, a maintained OAuth 2.0 client
library: discovery (RFC 8414), then the exchange (RFC 8693) as any OAuth
client makes it, then the errors the library raises.

usage: exchange.py <base URL> <bearer token> <scope, space-separated or "">

Prints one JSON object: {"metadata": …, "token": …, "errors": {case: code}}.
Run by tests/api/oauth_library.rs.
"""

import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

JWT = "urn:ietf:params:oauth:token-type:jwt"


def main(base, bearer, scope):
    metadata = requests.get(
        f"{base}/.well-known/oauth-authorization-server", timeout=10
    ).json()
    endpoint = metadata["token_endpoint"]
    grant_type = metadata["grant_types_supported"][0]

    session = OAuth2Session(
        client_id="sse-ticket-test",
        scope=scope.split() or None,
        token_endpoint_auth_method="none",
    )
    token = session.fetch_token(
        endpoint,
        grant_type=grant_type,
        subject_token=bearer,
        subject_token_type=JWT,
    )

    errors = {}
    refused = {
        "bad_subject_token": dict(grant_type=grant_type, subject_token="x.y.z", subject_token_type=JWT),
        "bad_scope": dict(grant_type=grant_type, subject_token=bearer, subject_token_type=JWT, scope="a//b"),
        "other_grant": dict(grant_type="client_credentials"),
        "no_token_type": dict(grant_type=grant_type, subject_token=bearer),
    }
    for case, params in refused.items():
        client = OAuth2Session(client_id="sse-ticket-test", token_endpoint_auth_method="none")
        try:
            client.fetch_token(endpoint, **params)
            errors[case] = None
        except OAuthError as error:
            errors[case] = error.error

    print(json.dumps({"metadata": metadata, "token": dict(token), "errors": errors}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
