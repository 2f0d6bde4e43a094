"""`warmline config check`: check the county's file and print the configuration in effect.

Each setting is printed with where its value came from — a packaged defaults file, the county's
own file, or the environment — so "why is the alert still at 180?" has a one-command answer.
A file with mistakes is refused here exactly as every other command refuses it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.config import load_settings
from bot.config_schema import leaves

# Environment variables Warmline reads, and whether their value is a secret (never printed).
ENVIRONMENT: tuple[tuple[str, bool], ...] = (
    ("WARMLINE_DATABASE_URL", True), ("WARMLINE_CONFIG", False), ("WARMLINE_NOW", False),
    ("WARMLINE_DATA_KEY", True), ("WARMLINE_DATA_KEY_FILE", False),
    ("WARMLINE_HTTP_HOST", False), ("WARMLINE_HTTP_PORT", False),
    ("WARMLINE_TELEGRAM_TOKEN", True), ("WARMLINE_TELEGRAM_MODE", False),
    ("WARMLINE_TELEGRAM_WEBHOOK_SECRET", True), ("WARMLINE_TELEGRAM_WEBHOOK_URL", False),
    ("WARMLINE_TELEGRAM_BASE_URL", False), ("WARMLINE_TELEGRAM_BOT_USERNAME", False),
    ("WARMLINE_WECHAT_APPID", False), ("WARMLINE_WECHAT_SECRET", True), ("WARMLINE_WECHAT_TOKEN", True),
    ("WARMLINE_WECHAT_AES_KEY", True), ("WARMLINE_WECHAT_API_BASE", False),
    ("WARMLINE_WECOM_CORP_ID", False), ("WARMLINE_WECOM_SECRET", True), ("WARMLINE_WECOM_AGENT_ID", False),
    ("WARMLINE_WECOM_TOKEN", True), ("WARMLINE_WECOM_AES_KEY", True), ("WARMLINE_WECOM_API_BASE", False),
    ("WARMLINE_SMS_PROVIDER", False), ("WARMLINE_SMS_ACCESS_KEY_ID", False),
    ("WARMLINE_SMS_ACCESS_KEY_SECRET", True), ("WARMLINE_SMS_SIGN_NAME", False), ("WARMLINE_SMS_SDK_APP_ID", False),
    ("WARMLINE_SMS_API_BASE", False), ("WARMLINE_SMS_CALLBACK_TOKEN", True),
    ("WARMLINE_CONSOLE_URL", False), ("WARMLINE_CONSOLE_SECRET", True),
)
SECRET = "（已设置，不显示 / set, not shown）"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="check the configuration file and show every setting in effect")
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="check --config / WARMLINE_CONFIG and print each setting with its source")
    check.add_argument("--format", choices=("table", "json"), default="table")
    check.set_defaults(func=run_check)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings(db=args.db, config=args.config)
    rows = [(path, value, settings.origins.get(path, "default")) for path, value in leaves(settings.raw)]
    env = [(name, SECRET if secret else settings.env[name], f"env {name}")
           for name, secret in ENVIRONMENT if settings.get_env(name)]
    db_source = ("--db" if args.db else "env WARMLINE_DATABASE_URL" if settings.get_env("WARMLINE_DATABASE_URL")
                 else "default ./warmline.db")
    if args.format == "json":
        print(json.dumps({"settings": [{"key": k, "value": v, "source": s} for k, v, s in rows],
                          "environment": [{"name": n, "value": v, "source": s} for n, v, s in env],
                          "database": {"source": db_source}}, ensure_ascii=False, indent=2))
        return 0
    print("配置没有问题 / configuration is valid")
    width = max(len(k) for k, _v, _s in rows)
    for key, value, source in rows:
        text = _shown(value)
        if len(text) > 60:
            text = text[:57] + "…"
        print(f"{key:<{width}} = {text:<40}  # {source}")
    print()
    print(f"database = {SECRET if settings.get_env('WARMLINE_DATABASE_URL') and not args.db else settings.database_url}"
          f"  # {db_source}")
    for name, value, source in env:
        print(f"{name} = {value}  # {source}")
    return 0
