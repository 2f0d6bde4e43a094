"""`warmline invite`: print a single-use, expiring registration code.

The code alone goes to standard output (scripts read it from there); what a person needs beside
it goes to standard error: when it expires, the Telegram link that opens the bot with the code
(`https://t.me/<bot>?start=<code>`, the bot's username from WARMLINE_TELEGRAM_BOT_USERNAME, else
the one the running bot learned from Telegram), and where the QR picture was written. A family
invite writes the QR picture by default (`invite-<code>.png` in the current folder), because a
volunteer usually prints it or shows it on their phone; `--qr FILE` chooses the file (any role),
`--no-qr` skips it. The picture holds the Telegram link, or the bare code when no bot username
is known (WeChat shows it as text the family can send to the Official Account).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from bot.app import App
from bot.commands import UsageError, open_app, output_file
from storage.invites import create_invite
from storage.models import Household, Lease

USERNAME_ENV = "WARMLINE_TELEGRAM_BOT_USERNAME"
USERNAME_LEASE = "telegram:bot_username"  # where bot/channels/telegram.py keeps what getMe said

ROLES = ("volunteer", "coordinator", "admin", "family")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("invite", help="make a single-use invite code")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--township", help="township name (coordinators and volunteers)")
    parser.add_argument("--household", help="household code (family invites)")
    parser.add_argument("--ttl-days", type=float, help="days until the code expires (default from config)")
    parser.add_argument("--qr", metavar="FILE",
                        help="write a QR picture (PNG) of the invite link here (family invites: "
                             "invite-<code>.png in the current folder by default)")
    parser.add_argument("--no-qr", action="store_true", help="do not write a QR picture")
    parser.set_defaults(func=run)


MAX_TTL_DAYS = 365


def run(args: argparse.Namespace) -> int:
    if args.ttl_days is not None and not 0 < args.ttl_days <= MAX_TTL_DAYS:
        raise UsageError(f"--ttl-days 应在 0 到 {MAX_TTL_DAYS} 天之间（不含 0），现在是 {args.ttl_days:g} / "
                         f"--ttl-days must be more than 0 and at most {MAX_TTL_DAYS}, not {args.ttl_days:g}")
    if args.qr:
        output_file(args.qr, "--qr")
    app = open_app(args)
    if args.role == "coordinator" and not args.township:
        print("协调员邀请码需要 --township / a coordinator invite needs --township", file=sys.stderr)
        return 2
    if args.role == "family" and not args.household:
        print("家庭邀请码需要 --household / a family invite needs --household", file=sys.stderr)
        return 2
    ttl = timedelta(days=args.ttl_days) if args.ttl_days is not None else app.services.invite_ttl
    now = app.services.now()
    with app.db.session() as session:
        household_id = None
        if args.household:
            household = session.scalar(select(Household).where(Household.code == args.household))
            if household is None:
                print(f"没有这个户编号 / unknown household: {args.household}", file=sys.stderr)
                return 2
            household_id = household.id
        try:
            code = create_invite(session, role=args.role, now=now, ttl=ttl, township=args.township,
                                 household_id=household_id)
        except LookupError:
            print(f"没有这个乡镇 / unknown township: {args.township}", file=sys.stderr)
            return 2
    expires = app.services.local(now + ttl).strftime("%Y-%m-%d %H:%M")
    print(code)
    print(f"一次有效，{expires} 前使用 / single use, valid until {expires}", file=sys.stderr)
    link = telegram_link(app, code)
    if link:
        print(f"Telegram: {link}", file=sys.stderr)
    qr_file = None if args.no_qr else (args.qr or (f"invite-{code}.png" if args.role == "family" else None))
    if qr_file:
        try:
            write_qr(link or code, Path(qr_file))
        except OSError as exc:
            print(f"二维码没有写成 / QR picture not written: {exc.strerror or exc}", file=sys.stderr)
            return 1
        what = "Telegram 链接" if link else "邀请码（未设置 Telegram 机器人用户名）"
        print(f"二维码 / QR ({what}): {Path(qr_file).resolve()}", file=sys.stderr)
    return 0


def bot_username(app: App) -> str | None:
    """WARMLINE_TELEGRAM_BOT_USERNAME, else the username the running bot learned from Telegram."""
    name = app.settings.get_env(USERNAME_ENV)
    if not name:
        with app.db.session() as session:
            lease = session.get(Lease, USERNAME_LEASE)
            name = lease.value if lease is not None else None
    name = (name or "").strip().lstrip("@")
    return name or None


def telegram_link(app: App, code: str) -> str | None:
    username = bot_username(app)
    return f"https://t.me/{username}?start={code}" if username else None


def write_qr(data: str, path: Path) -> None:
    """A PNG QR code of `data` (qrcode draws it with Pillow)."""
    import qrcode  # only when a picture is asked for

    path.parent.mkdir(parents=True, exist_ok=True)
    image = qrcode.make(data, border=4)
    with path.open("wb") as fh:
        image.save(fh)
