import time
from tests.test_wechat import *  # noqa

async def test_measure(county, post):
    link(county, VOLUNTEER_OPENID, person_id(county, phone="10000000001"))
    times = []
    for i in range(20):
        t = time.monotonic()
        r = await post.encrypted(text_xml(VOLUNTEER_OPENID, "菜单", 90000 + i))
        times.append(time.monotonic() - t)
        assert "走访" in post.open_reply(r)["Content"]
    times.sort()
    print("MEASURE median_ms=%.1f p95_ms=%.1f max_ms=%.1f" % (times[10]*1000, times[18]*1000, times[-1]*1000))
