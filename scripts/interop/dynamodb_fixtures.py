"""DynamoDB fixtures made with boto3 against the local server (moto serves
DynamoDB and KMS on one endpoint), the way an application following the
operations guide's method A stores a KMS-encrypted data key beside a record.
Used by rotate-cli/tests/dynamodb.rs and scripts/bench-dynamodb.sh.

  dynamodb_fixtures.py create-table TABLE
        a table keyed by pk (S, partition) and sk (N, sort), on demand
  dynamodb_fixtures.py fill TABLE N PARTITIONS KEY OUT_JSON
        N items over PARTITIONS partition keys: `edk_b` holds a GenerateDataKey
        blob under KEY as binary (B), `edk_s` another one as base64 text (S),
        beside attributes rekey must leave alone; the plaintext data keys go
        to OUT_JSON (test material only)
  dynamodb_fixtures.py snapshot TABLE           -> JSON {"pk/sk": item in DynamoDB JSON}
  dynamodb_fixtures.py decrypt TABLE KEY        -> JSON {"pk/sk": {attr: base64 data key}};
        fails unless KMS says every blob is under KEY
  dynamodb_fixtures.py app-writer TABLE KEY SECONDS OUT_JSON
        an application rewriting `edk_s` of random items with fresh data keys
        until SECONDS pass; its last data key per item goes to OUT_JSON
  dynamodb_fixtures.py loop TABLE FROM TO       -> JSON {"items": n, "seconds": s, "kms_calls": c}
        the plain loop an operator would write: scan, ReEncrypt each blob,
        conditional UpdateItem, one item at a time

The endpoint comes from AWS_ENDPOINT_URL.
"""

import base64
import concurrent.futures
import json
import os
import random
import sys
import time

import boto3
from botocore.config import Config

ATTRS = ("edk_b", "edk_s")


def client(service):
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(max_pool_connections=32, retries={"max_attempts": 10, "mode": "standard"}),
    )


def item_name(item):
    return f"{item['pk']['S']}/{item['sk']['N']}"


def scan(ddb, table):
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        yield from page["Items"]


def create_table(table):
    ddb = client("dynamodb")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )


def fill(table, n, partitions, key, out):
    ddb, kms = client("dynamodb"), client("kms")

    def make(i):
        b = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        s = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        item = {
            "pk": {"S": f"tenant-{i % partitions}"},
            "sk": {"N": str(i)},
            "edk_b": {"B": b["CiphertextBlob"]},
            "edk_s": {"S": base64.b64encode(s["CiphertextBlob"]).decode()},
            "name": {"S": f"customer {i}"},
            "balance": {"N": f"{i}.25"},
            "tags": {"L": [{"S": "a"}, {"N": "1"}]},
            "meta": {"M": {"blob": {"B": bytes([i % 256, 0, 255])}}},
        }
        keys = {"edk_b": base64.b64encode(b["Plaintext"]).decode(), "edk_s": base64.b64encode(s["Plaintext"]).decode()}
        return item, keys

    plain = {}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        made = list(pool.map(make, range(n)))
    for start in range(0, n, 25):
        batch = [{"PutRequest": {"Item": item}} for item, _ in made[start : start + 25]]
        while batch:
            left = ddb.batch_write_item(RequestItems={table: batch}).get("UnprocessedItems", {}).get(table, [])
            batch = left
    for item, keys in made:
        plain[item_name(item)] = keys
    with open(out, "w") as f:
        json.dump(plain, f)


def typed(value):
    """An attribute value as JSON, binary values in base64."""
    (kind, v), = value.items()
    if kind == "B":
        return {"B": base64.b64encode(v).decode()}
    if kind == "M":
        return {"M": {k: typed(x) for k, x in v.items()}}
    if kind == "L":
        return {"L": [typed(x) for x in v]}
    return {kind: v}


def snapshot(table):
    ddb = client("dynamodb")
    print(json.dumps({item_name(i): {k: typed(v) for k, v in i.items()} for i in scan(ddb, table)}, sort_keys=True))


def decrypt(table, key):
    ddb, kms = client("dynamodb"), client("kms")
    want = kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    items = list(scan(ddb, table))

    def open_item(item):
        keys = {}
        for attr in ATTRS:
            value = item.get(attr)
            if value is None:
                continue
            blob = value["B"] if "B" in value else base64.b64decode(value["S"])
            answer = kms.decrypt(CiphertextBlob=blob)
            if answer["KeyId"] != want:
                raise SystemExit(f"{item_name(item)} {attr} is under {answer['KeyId']}, not {want}")
            keys[attr] = base64.b64encode(answer["Plaintext"]).decode()
        return item_name(item), keys

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        print(json.dumps(dict(pool.map(open_item, items)), sort_keys=True))


def app_writer(table, key, seconds, out):
    ddb, kms = client("dynamodb"), client("kms")
    names = [(i["pk"], i["sk"]) for i in scan(ddb, table)]
    last = {}
    end = time.time() + seconds
    while time.time() < end:
        pk, sk = random.choice(names)
        fresh = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        ddb.update_item(
            TableName=table,
            Key={"pk": pk, "sk": sk},
            UpdateExpression="SET edk_s = :v",
            ExpressionAttributeValues={":v": {"S": base64.b64encode(fresh["CiphertextBlob"]).decode()}},
        )
        last[f"{pk['S']}/{sk['N']}"] = base64.b64encode(fresh["Plaintext"]).decode()
    with open(out, "w") as f:
        json.dump(last, f)


def loop(table, source, dest):
    ddb, kms = client("dynamodb"), client("kms")
    start, n, calls = time.time(), 0, 0
    for item in scan(ddb, table):
        for attr in ATTRS:
            value = item.get(attr)
            if value is None:
                continue
            blob = value["B"] if "B" in value else base64.b64decode(value["S"])
            new = kms.re_encrypt(CiphertextBlob=blob, SourceKeyId=source, DestinationKeyId=dest)["CiphertextBlob"]
            calls += 1
            new_value = {"B": new} if "B" in value else {"S": base64.b64encode(new).decode()}
            ddb.update_item(
                TableName=table,
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #a = :n",
                ConditionExpression="#a = :o",
                ExpressionAttributeNames={"#a": attr},
                ExpressionAttributeValues={":n": new_value, ":o": value},
            )
        n += 1
    print(json.dumps({"items": n, "seconds": time.time() - start, "kms_calls": calls}))


def main(argv):
    command, args = argv[1], argv[2:]
    if command == "create-table":
        create_table(args[0])
    elif command == "fill":
        fill(args[0], int(args[1]), int(args[2]), args[3], args[4])
    elif command == "snapshot":
        snapshot(args[0])
    elif command == "decrypt":
        decrypt(args[0], args[1])
    elif command == "app-writer":
        app_writer(args[0], args[1], float(args[2]), args[3])
    elif command == "loop":
        loop(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
