"""Identity linking, pure: which customer each message of a batch belongs to."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

from switchboard_common.events import CustomerIdentity, IdentityKind
from switchboard_conversation.conversations.linking import Sender, link

API = IdentityKind.API
EMAIL = IdentityKind.EMAIL


def ident(kind: IdentityKind, value: str) -> CustomerIdentity:
    return CustomerIdentity(kind=kind, value=value)


def fixed_ids() -> Callable[[], uuid.UUID]:
    counter = itertools.count(1)
    return lambda: uuid.UUID(int=next(counter))


def test_known_sender_identity_gives_its_customer() -> None:
    known = uuid.uuid4()
    result = link([Sender(ident(API, "c-1"), [], None)], {("api", "c-1"): known})
    assert result.customer_of == [known] and not result.new_customers and not result.new_identities


def test_sender_identity_wins_over_a_linked_email() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    owners = {("api", "c-1"): mine, ("email", "x@example.com"): other}
    result = link([Sender(ident(API, "c-1"), [ident(EMAIL, "x@example.com")], None)], owners)
    assert result.customer_of == [mine]
    assert result.new_identities == {}  # the email stays with its owner


def test_an_unknown_sender_is_linked_by_a_known_email_and_the_identity_attached() -> None:
    owner = uuid.uuid4()
    result = link(
        [Sender(ident(API, "c-2"), [ident(EMAIL, "x@example.com")], "Bo")],
        {("email", "x@example.com"): owner},
    )
    assert result.customer_of == [owner]
    assert result.new_identities == {("api", "c-2"): owner}
    assert result.names_to_fill == {owner: "Bo"} and not result.claimed


def test_messages_of_one_batch_see_each_other() -> None:
    new_id = fixed_ids()
    senders = [
        Sender(ident(API, "c-1"), [ident(EMAIL, "x@example.com")], "Ann"),
        Sender(ident(API, "c-1"), [], None),
        Sender(ident(EMAIL, "x@example.com"), [], None),
    ]
    result = link(senders, {}, new_id=new_id)
    first = uuid.UUID(int=1)
    assert result.customer_of == [first, first, first]
    assert result.new_customers == {first: "Ann"}
    # Every identity of a new customer is claimed: a concurrent transaction attaching the same email to
    # another customer must make this batch retry, or the customer would be split in two.
    assert result.claimed == {("api", "c-1"), ("email", "x@example.com")}
    assert result.new_identities == {("api", "c-1"): first, ("email", "x@example.com"): first}


def test_an_unknown_email_sender_answering_a_customers_thread_joins_that_customer() -> None:
    customer = uuid.uuid4()
    colleague = Sender(ident(EMAIL, "colleague@example.com"), [], None, replied_to=customer)
    result = link([colleague], {})
    assert result.customer_of == [customer] and not result.new_customers
    assert result.new_identities == {("email", "colleague@example.com"): customer}
    assert not result.claimed  # an existing customer's new identity: nobody else can be created from it


def test_a_known_sender_stays_their_own_customer_whatever_thread_they_answer() -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    sender = Sender(ident(EMAIL, "me@example.com"), [], None, replied_to=theirs)
    assert link([sender], {("email", "me@example.com"): mine}).customer_of == [mine]
