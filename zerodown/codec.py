"""Version-skew-safe records: data that release N and N+1 of an app can both read.

from zerodown.codec import Record, Registry, UnreadableRecord

records = Registry()

@records.record("cart", version=2)
class Cart(Record):
    items: list[str] = []
    coupon: str | None = None

payload = records.encode(Cart(items=["book"]))
cart = records.decode(payload, Cart)
"""

from ._deprecated import moved
from ._errors import UnreadableRecord
from ._records.codec import DEFAULT_MAX_PAYLOAD_SIZE, Record, RecordType, Registry

__all__ = ["DEFAULT_MAX_PAYLOAD_SIZE", "Record", "RecordType", "Registry", "UnreadableRecord"]

__getattr__ = moved(
    __name__, {"DEFAULT_MAX_SIZE": ("DEFAULT_MAX_PAYLOAD_SIZE", DEFAULT_MAX_PAYLOAD_SIZE)}
)
