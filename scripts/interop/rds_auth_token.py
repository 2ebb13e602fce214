#!/usr/bin/env python3
"""An RDS IAM authentication token made by boto3, for rekey's tests to match.

    rds_auth_token.py HOST PORT USER REGION ACCESS_KEY SECRET_KEY [SESSION_TOKEN] [--at UNIX_SECONDS]

Prints what `boto3.client("rds").generate_db_auth_token(...)` returns for
those credentials, at the given time (default: now). The unit test in
rotate-cli/src/engine/table/rds_iam.rs holds tokens printed by this script
for fixed inputs; tests/secrets.rs runs it live (ignored unless the test
venv is there).
"""

import datetime
import sys
from unittest import mock

import boto3
import botocore.auth


def main() -> None:
    args = sys.argv[1:]
    at = None
    if "--at" in args:
        i = args.index("--at")
        at = datetime.datetime.fromtimestamp(int(args[i + 1]), tz=datetime.timezone.utc).replace(tzinfo=None)
        del args[i : i + 2]
    host, port, user, region, access, secret, *rest = args
    session = boto3.session.Session(
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        aws_session_token=rest[0] if rest else None,
        region_name=region,
    )
    client = session.client("rds", region_name=region)
    if at is None:
        token = client.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=region)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            token = client.generate_db_auth_token(DBHostname=host, Port=int(port), DBUsername=user, Region=region)
    print(token)


if __name__ == "__main__":
    main()
