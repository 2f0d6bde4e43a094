"""The dialog base: a state machine on `transitions`, with one ask/handle pair per state.

A dialog declares its states and transition table as class literals so its whole graph reads at
a glance. The runner restores the state from the database, calls `on_<state>` with the user's
answer, fires the trigger it returns, and asks the question of the state it lands in. One
`Machine` is built per dialog class; instances are attached for one step and detached again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from transitions import Machine
from transitions.core import MachineError

from dialogs.engine.form import Form
from dialogs.engine.types import Option, Reply
from dialogs.parsing import clean_text
from domain.messages import action_value, parse_action

if TYPE_CHECKING:
    from dialogs.engine.context import StepContext

__all__ = ["Answer", "Dialog", "Finish", "Invalid", "Stay", "StepResult", "action_value",
           "parse_action"]


@dataclass(frozen=True)
class Answer:
    """The user's input for this step: normalized text, and the option's value if one was chosen."""

    text: str
    value: str | None = None
    raw: str = ""

    @property
    def clean(self) -> str:
        """The words as typed, for saving: full-width punctuation and line breaks kept."""
        return clean_text(self.raw) or self.text


@dataclass(frozen=True)
class Invalid:
    """The answer did not fit; `message` says why, and the question is asked again."""

    message: str


@dataclass(frozen=True)
class Stay:
    """Remain in this state with a reply (a long answer given over several messages)."""

    reply: Reply


@dataclass(frozen=True)
class Finish:
    """The dialog is over; these replies close it.

    `then` (an action such as {"start": "family_consent"}) starts the next dialog at once, so a
    family member who has just registered is asked for consent without writing again.
    """

    replies: tuple[Reply, ...]
    then: dict[str, Any] | None = None

    @classmethod
    def with_text(cls, text: str, options: tuple[Option, ...] = ()) -> Finish:
        return cls((Reply(text, options),))


StepResult = str | Invalid | Stay | Finish


class Dialog:
    """Base of every conversation. Subclasses set the class literals and write ask_/on_ methods."""

    name: ClassVar[str]
    roles: ClassVar[frozenset[str]]
    keywords: ClassVar[tuple[str, ...]] = ()
    states: ClassVar[list[str]]
    transitions: ClassVar[list[dict[str, Any]]]
    idle_timeout: ClassVar[timedelta | None] = None
    in_menu: ClassVar[bool] = True
    # Words that start this dialog from anywhere, even in the middle of another (e.g. 退订).
    global_keywords: ClassVar[tuple[str, ...]] = ()
    # Platform events (e.g. "subscribe") that start this dialog; args carry {"event": name}.
    events: ClassVar[tuple[str, ...]] = ()
    # Text sent outside any dialog by someone with no menu goes here (a family's words).
    catches_free_text: ClassVar[bool] = False
    # Someone the bot does not know yet comes here (a deep link's code, a shared contact, words).
    for_newcomers: ClassVar[bool] = False
    # States where sharing one's own phone number answers the question (Telegram offers a button).
    contact_states: ClassVar[tuple[str, ...]] = ()
    _machine: ClassVar[Machine | None] = None

    # The dialog's answers as a typed structure (dialogs/engine/form.py), saved as the
    # session's JSON between steps.
    form_type: ClassVar[type[Form]] = Form
    form: Form

    state: str

    def __init__(self, ctx: StepContext, data: dict[str, Any]) -> None:
        self.ctx = ctx
        self.form = self.form_type.load(data)

    @property
    def data(self) -> dict[str, Any]:
        """The answers as the session stores them (JSON): the form, dumped. Read-only."""
        return self.form.dump()

    @classmethod
    def start_value(cls, **args: Any) -> str:
        """The option value of a button that starts this dialog, pre-filled: how menus, cards,
        reminders and forwarded messages point at a dialog without knowing its name."""
        return action_value(cls.name, **args)

    @classmethod
    def start_action(cls, **args: Any) -> dict[str, Any]:
        """The same as an action, for `Finish(then=...)`: hand over to this dialog at once."""
        return {"start": cls.name, **args}

    @classmethod
    def machine(cls) -> Machine:
        if cls.__dict__.get("_machine") is None:
            cls._machine = Machine(
                model=None,
                states=cls.states,
                transitions=cls.transitions,
                initial=cls.states[0],
                auto_transitions=False,
                ignore_invalid_triggers=False,
            )
        machine: Machine | None = cls.__dict__["_machine"]
        assert machine is not None
        return machine

    def trigger(self, name: str) -> bool:
        """Fire one of the class machine's transitions on this dialog.

        The dialog is never attached to the shared machine (`add_model`): attaching and
        detaching a model for one step cost more than the step's own logic, and a dialog needs
        nothing of what attaching adds (its `state` attribute is all the machine reads and writes).
        """
        event = self.machine().events.get(name)
        if event is None:
            raise MachineError(f"{self.name}: no transition named {name!r}")
        return bool(event.trigger(self))

    def t(self, key: str, **values: Any) -> str:
        return self.ctx.t(f"{self.name}.{key}", **values)

    async def begin(self, args: dict[str, Any]) -> None:
        """Take what the caller pre-filled (a household chosen from a reminder, say)."""
        self.form = self.form.prefill({k: v for k, v in args.items() if k != "start"})

    async def ask(self) -> Reply | str | Finish:
        """The question of the current state, or a trigger name to skip a state already answered."""
        question: Reply | str | Finish = await getattr(self, f"ask_{self.state}")()
        return question

    async def handle(self, answer: Answer) -> StepResult:
        result: StepResult = await getattr(self, f"on_{self.state}")(answer)
        return result

    def help_text(self) -> str:
        key = f"{self.name}.help_{self.state}"
        from dialogs.engine.catalog import has

        if has(key, self.ctx.locale):
            return self.ctx.t(key)
        return self.ctx.t(f"{self.name}.help")

    def title(self) -> str:
        return self.ctx.t(f"{self.name}.title")

    @classmethod
    def title_in(cls, ctx: StepContext) -> str:
        """The dialog's title in the reader's language (a button that starts it)."""
        return ctx.t(f"{cls.name}.title")
