"""Who wrote each message: the identity-linking policy, pure, for a whole batch at once.

A known sender identity gives its customer. Otherwise another identity the message carries (an email or
phone the channel vouches for) links it to that identity's customer. Otherwise, for an email answering a
message in a customer's thread (In-Reply-To / References), that customer. Otherwise it is a new customer. An
identity already owned by a customer is never moved (merging customers is an explicit act). Messages of
one batch see each other: two first messages of one new sender make one customer, not two.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from switchboard_common.events import CustomerIdentity

IdentityKey = tuple[str, str]


def key_of(identity: CustomerIdentity) -> IdentityKey:
    return (identity.kind.value, identity.value)


@dataclass(frozen=True, slots=True)
class Sender:
    identity: CustomerIdentity
    others: Sequence[CustomerIdentity]
    display_name: str | None
    replied_to: uuid.UUID | None = None  # the customer whose thread the message answers, if any


@dataclass
class Linking:
    customer_of: list[uuid.UUID] = field(default_factory=list)  # one per message, in order
    new_customers: dict[uuid.UUID, str | None] = field(default_factory=dict)  # id -> display name
    # identity -> customer, for identities to attach. Every identity of a new customer is ``claimed``: if
    # another transaction attached one of them first (say the same email, from another replica), that
    # customer exists and this one must not be created beside it.
    new_identities: dict[IdentityKey, uuid.UUID] = field(default_factory=dict)
    claimed: set[IdentityKey] = field(default_factory=set)
    names_to_fill: dict[uuid.UUID, str] = field(default_factory=dict)  # existing customers without a name


def link(
    senders: Sequence[Sender],
    owners: Mapping[IdentityKey, uuid.UUID],
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Linking:
    """Decide the customer of every message; ``owners`` are the identities already stored."""
    known = dict(owners)
    out = Linking()
    for sender in senders:
        sender_key = key_of(sender.identity)
        customer = known.get(sender_key)
        if customer is None:
            customer = next((known[key_of(i)] for i in sender.others if key_of(i) in known), None)
        if customer is None:
            customer = sender.replied_to
        is_new = customer is None
        if customer is None:
            customer = new_id()
            out.new_customers[customer] = sender.display_name
        elif sender.display_name and customer not in out.new_customers:
            out.names_to_fill.setdefault(customer, sender.display_name)
        for identity in (sender.identity, *sender.others):
            key = key_of(identity)
            if key not in known:
                known[key] = customer
                out.new_identities[key] = customer
                if is_new:
                    out.claimed.add(key)
        out.customer_of.append(customer)
    return out
