"""The phone library through its Python bindings, against a real gridsync-server.

Run by `cargo test` (sync-core/ffi/bindgen/tests/bindings.rs), which generates the bindings,
starts the server and passes its address and enrollment codes in the environment.
"""

import asyncio
import gc
import hashlib
import os
import sys
import threading
import time

sys.path.insert(0, os.environ["GRIDSYNC_BINDINGS"])

import gridsync_ffi as g  # noqa: E402

GRID = os.environ["GRIDSYNC_GRID"]
URL = os.environ["GRIDSYNC_URL"]
STORES = os.environ["GRIDSYNC_STORES"]


def store(name):
    return os.path.join(STORES, name)


class Recorder(g.PhoneListener):
    """Keeps every event, with the thread it arrived on."""

    def __init__(self):
        self.progress = []
        self.changed = []
        self.threads = set()

    def on_progress(self, progress):
        self.progress.append(progress)
        self.threads.add(threading.get_ident())

    def on_changed(self, ids):
        self.changed.extend(ids)


async def enrolled(name, worker, code):
    phone = await g.Phone.open(store(name), None)
    await phone.set_worker(worker, None, None)
    await phone.enroll(URL, code)
    return phone


def eventually(check, what):
    """Events reach the listener on the library's event thread, soon after the call."""
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def sync_options():
    return g.SyncOptions(retry_refused=False, metered=False, photos=True)


def test_two_phones_one_records_offline_the_other_sees_it():
    async def main():
        a = await enrolled("a.db", "周网格", os.environ["GRIDSYNC_CODE_A"])
        b = await enrolled("b.db", "吴网格", os.environ["GRIDSYNC_CODE_B"])
        me = await a.identity()
        assert me.enrolled and me.role == "worker" and me.worker == "周网格"

        # Phone A works offline: a household, its head (gender and birth date from the ID
        # number), a visit, a case with a photo.
        h = await a.add_household(
            g.NewHousehold(grid=GRID, address="城南社区 3 幢 501 室", residence="常住", flags=["独居"])
        )
        head = await a.add_resident(
            h,
            g.NewResident(
                name="王建国",
                relation="户主",
                person=g.PersonFields(
                    id_number="11010519491231002X",
                    gender=None,
                    birth_date=None,
                    phones=["13812345678"],
                    work=None,
                    categories=[],
                ),
            ),
        )
        await a.add_visit(
            g.NewVisit(household=h, purpose="日常走访", findings="血压偏高", lat=None, lon=None)
        )
        case = await a.report_case(
            g.NewCase(
                grid=GRID,
                title="楼道灯损坏",
                source=None,
                subcategory="0102",
                address="3 幢",
                description="楼道灯不亮",
                urgent=False,
                lat=None,
                lon=None,
                party_name="王建国",
                party_phone="13812345678",
                party_household=h,
            )
        )
        with open(os.environ["GRIDSYNC_PHOTO"], "rb") as f:
            photo = await a.add_photo(
                g.NewPhoto(
                    bytes=f.read(),
                    case_id=case,
                    household_id=None,
                    visit_id=None,
                    inspection_id=None,
                    checkpoint_id=None,
                    stage="处置前",
                    lat=None,
                    lon=None,
                )
            )
        waiting = await a.status()
        assert waiting.unsynced_documents == 2
        assert waiting.photo_files_waiting == 2  # the image and its thumbnail
        queue = await a.upload_queue()
        assert [f.kind for f in queue] == ["thumb", "full"]
        assert all(f.waiting_for_sync and f.uploaded == 0 for f in queue)

        recorder = Recorder()
        a.set_listener(recorder)
        done = await a.sync(sync_options())
        assert done.acked == 2 and done.refused == []
        assert done.photos_uploaded == 2
        eventually(lambda: recorder.progress and recorder.progress[-1].phase == "photos", "progress")
        assert recorder.progress[0].phase == "documents"
        # Called on one thread of the library's (its event thread), never on the app's.
        assert len(recorder.threads) == 1, recorder.threads
        assert threading.get_ident() not in recorder.threads
        left = await a.status()
        assert left.unsynced_documents == 0 and left.photo_files_waiting == 0

        seen = Recorder()
        b.set_listener(seen)
        await b.sync(sync_options())
        eventually(lambda: h in seen.changed and case in seen.changed, "changed events")
        archive = await b.household(h)
        assert archive.address == "城南社区 3 幢 501 室"
        assert archive.flags == ["独居"]
        (m,) = archive.members
        assert (m.id, m.relation_label, m.gender, m.birth_date) == (head, "户主", "female", "1949-12-31")
        assert [v.purpose for v in archive.visits] == ["日常走访"]
        assert [c.id for c in archive.past_requests] == [case]
        found = await b.search_residents("王建", 0, 10)
        assert found.total == 1 and found.hits[0].household.id == h
        view = await b.case_view(case)
        assert view.status == "reported" and view.status_label == "已上报"
        assert [p.id for p in view.photos] == [photo]
        assert view.photos[0].stage_label == "处置前"
        assert not view.photos[0].on_this_phone  # on the server; B fetches it when shown
        thumb = view.photos[0].thumb_sha256
        path = await b.fetch_photo(thumb)
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == thumb
        assert [x.code for x in view.allowed_actions] == ["self_handle"]

        # Removing a listener delivers what is queued and then nothing more arrives; closing
        # refuses later calls.
        for phone, heard in ((a, recorder), (b, seen)):
            phone.set_listener(None)
            n = len(heard.progress) + len(heard.changed)
            await phone.close()
            assert len(heard.progress) + len(heard.changed) == n
        try:
            await a.identity()
        except g.ApiError.NotSetUp as e:
            assert "closed" in str(e)
        else:
            raise AssertionError("a closed phone answered")

    asyncio.run(main())


def test_an_invalid_id_number_is_a_typed_error_and_changes_nothing():
    blank = g.PersonFields(id_number=None, gender=None, birth_date=None, phones=[], work=None, categories=[])

    async def main():
        p = await g.Phone.open(store("invalid.db"), None)
        await p.set_worker("周网格", None, None)
        h = await p.add_household(g.NewHousehold(grid=GRID, address="城北 1 号", residence=None, flags=[]))
        bad = g.NewResident(
            name="王小明",
            relation="子",
            person=g.PersonFields(
                id_number="110105194912310021",
                gender=None,
                birth_date=None,
                phones=[],
                work=None,
                categories=[],
            ),
        )
        try:
            await p.add_resident(h, bad)
        except g.ApiError.Invalid as e:
            assert str(e).startswith("id_number:"), str(e)
            assert "X" in str(e)  # the expected check character
        else:
            raise AssertionError("a wrong check character was accepted")
        assert (await p.household(h)).members == []
        try:
            await p.add_resident(h, g.NewResident(name="王小明", relation="表哥", person=blank))
        except g.ApiError.Invalid as e:
            assert "子女 (child)" in str(e)
        else:
            raise AssertionError("an unknown relation was accepted")

    asyncio.run(main())


def test_async_calls_leave_the_event_loop_free():
    async def main():
        p = await g.Phone.open(store("async.db"), None)
        await p.set_worker("周网格", None, None)
        case = await p.report_case(
            g.NewCase(
                grid=GRID,
                title="占道",
                source=None,
                subcategory="0201",
                address="城南路",
                description="纸箱",
                urgent=False,
                lat=None,
                lon=None,
                party_name=None,
                party_phone=None,
                party_household=None,
            )
        )
        with open(os.environ["GRIDSYNC_BIG_PHOTO"], "rb") as f:
            camera = f.read()
        ticks = 0
        running = False

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                if running:
                    ticks += 1

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        running = True
        started = time.monotonic()
        await p.add_photo(
            g.NewPhoto(
                bytes=camera,
                case_id=case,
                household_id=None,
                visit_id=None,
                inspection_id=None,
                checkpoint_id=None,
                stage=None,
                lat=None,
                lon=None,
            )
        )
        took = time.monotonic() - started
        running = False
        t.cancel()
        # A 12-megapixel photo takes tens of milliseconds at least; had its processing run on
        # the event loop's thread, the ticker could not have run while it did.
        assert took > 0.02, took
        assert ticks >= 5, (ticks, took)
        assert len(await p.photos(case)) == 1

    asyncio.run(main())


def test_a_second_open_of_the_same_store_is_refused_until_the_first_is_gone():
    async def main():
        path = store("shared.db")
        first = await g.Phone.open(path, None)
        await first.set_worker("周网格", None, None)
        try:
            await g.Phone.open(path, None)
        except g.ApiError.StoreInUse as e:
            assert "open elsewhere" in str(e)
        else:
            raise AssertionError("two owners opened one store")
        device = (await first.identity()).device
        del first
        gc.collect()
        again = await g.Phone.open(path, None)
        assert (await again.identity()).device == device

    asyncio.run(main())


def test_reference_data_and_vocabularies_have_chinese_labels():
    async def main():
        p = await g.Phone.open(store("reference.db"), None)
        cats = {c.code: c for c in p.categories()}
        assert cats["0102"].lead.code and cats["0102"].limit.endswith("个工作日")
        assert any(d.code == cats["0102"].lead.code for d in p.departments())
        v = p.vocabularies()
        assert {"code": "child", "label": "子女"} in [{"code": t.code, "label": t.label} for t in v.relations]
        try:
            await p.cases("nonsense")
        except g.ApiError.Invalid as e:
            assert "已派遣 (dispatched)" in str(e)
        else:
            raise AssertionError("an unknown status was accepted")

    asyncio.run(main())
