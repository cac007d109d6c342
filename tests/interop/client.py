#!/usr/bin/env python3
"""aiortc interop client for ringbridge.

Joins a conference through ringbridge's signalling endpoint
(`POST /conferences/{room}/endpoints`, see DESIGN.md), publishes a synthetic
VP8 video track and a synthetic Opus tone, receives the other participants
through `recvonly` slots, counts what it decodes and prints exactly one JSON
line on stdout at the end, for the Rust harness (tests/tests/interop_aiortc.rs)
to assert on.  Diagnostics go to stderr.

Exit codes: 0 = ran as asked (for a non-201 answer: the status is reported and,
with --expect-status, matched); 1 = ran but something is missing (no
connection, no media, unexpected status); 2 = usage or connection error
(bridge not reachable).

Only loopback is used: aioice is patched so that 127.0.0.1 is the one host
candidate (DESIGN.md, "Testing on one machine"), or the address given with
--host-address (a bridge in a network namespace behind a veth pair).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import re
import sys
import time
import urllib.parse
from array import array
from typing import Any, Optional

import aiohttp
import av
from aioice import ice
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError


# --- loopback patch -------------------------------------------------------
# aioice 0.13: `get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]`,
# called from Connection.gather_candidates as a module global, so replacing the
# module attribute is enough.  Upstream leaves 127.0.0.1 out.
# --host-address replaces the address (set in main, before any gathering).
_HOST_ADDRESS = "127.0.0.1"


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [_HOST_ADDRESS] if use_ipv4 else []


ice.get_host_addresses = _loopback_only


def log(msg: str) -> None:
    print(f"[client] {msg}", file=sys.stderr, flush=True)


# --- synthetic media ------------------------------------------------------
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
VIDEO_W, VIDEO_H = 640, 480


class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine at 48 kHz, mono s16, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, freq: int = 440, amplitude: int = 8000) -> None:
        super().__init__()
        # One second holds an integer number of periods, so it loops cleanly.
        one_second = array(
            "h",
            (
                int(amplitude * math.sin(2 * math.pi * freq * i / AUDIO_RATE))
                for i in range(AUDIO_RATE)
            ),
        )
        self._pcm = one_second.tobytes()
        self._start: Optional[float] = None
        self._timestamp = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
            self._timestamp = 0
        else:
            self._timestamp += AUDIO_SAMPLES
            wait = self._start + self._timestamp / AUDIO_RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        offset = (self._timestamp % AUDIO_RATE) * 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._pcm[offset : offset + AUDIO_SAMPLES * 2])
        frame.pts = self._timestamp
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class PatternTrack(VideoStreamTrack):
    """640x480 yuv420p frames at 30 fps with moving diagonal stripes."""

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        # Twice the width, so that any row is a slice of it.
        self._luma_row = bytes((i * 3) & 0xFF for i in range(VIDEO_W * 2))
        self._chroma_row = bytes(
            64 + ((i * 2) & 0x7F) for i in range(VIDEO_W)  # half width * 2
        )

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        n = self._n
        self._n += 1
        frame = av.VideoFrame(VIDEO_W, VIDEO_H, "yuv420p")
        y_plane = b"".join(
            self._luma_row[(y + 4 * n) % VIDEO_W : (y + 4 * n) % VIDEO_W + VIDEO_W]
            for y in range(VIDEO_H)
        )
        cw, ch = VIDEO_W // 2, VIDEO_H // 2
        u_plane = b"".join(
            self._chroma_row[(y + 2 * n) % cw : (y + 2 * n) % cw + cw] for y in range(ch)
        )
        v_plane = bytes([128]) * (cw * ch)
        for plane, data, width, height in (
            (frame.planes[0], y_plane, VIDEO_W, VIDEO_H),
            (frame.planes[1], u_plane, cw, ch),
            (frame.planes[2], v_plane, cw, ch),
        ):
            if plane.line_size != width:  # padded lines: re-stride
                data = b"".join(
                    data[r * width : (r + 1) * width].ljust(plane.line_size, b"\0")
                    for r in range(height)
                )
            plane.update(data)
        frame.pts = pts
        frame.time_base = time_base
        return frame


def prefer(transceiver: Any, kind: str, mime: str, rtx: bool) -> None:
    codecs = [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.lower() == mime.lower()
        or (rtx and c.mimeType.lower() == f"{kind}/rtx")
    ]
    transceiver.setCodecPreferences(codecs)


# --- receiving ------------------------------------------------------------
class SlotStats:
    """What one received track delivered inside the counting window."""

    def __init__(self, kind: str, mid: Optional[str]) -> None:
        self.kind = kind
        self.mid = mid
        self.frames = 0
        self.frames_total = 0
        self.first_pts: Optional[int] = None
        self.last_pts: Optional[int] = None
        self.unwrapped = 0  # pts span, with 32-bit RTP wrap taken into account
        self.time_base: Optional[fractions.Fraction] = None
        self.size: Optional[str] = None
        self.sum_sq = 0.0
        self.n_samples = 0

    def span_s(self) -> float:
        if self.time_base is None:
            return 0.0
        return float(self.unwrapped * self.time_base)

    def rms(self) -> Optional[float]:
        if self.n_samples == 0:
            return None
        return math.sqrt(self.sum_sq / self.n_samples)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "mid": self.mid,
            "frames": self.frames,
            "frames_total": self.frames_total,
            "span_s": round(self.span_s(), 3),
        }
        if self.kind == "video":
            out["size"] = self.size
        else:
            rms = self.rms()
            out["rms"] = None if rms is None else round(rms, 1)
        return out


class Window:
    """Counting window: opens at the first decoded frame, lasts `duration`."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.start: Optional[float] = None
        self.first_media = asyncio.Event()

    def admit(self) -> bool:
        now = time.monotonic()
        if self.start is None:
            self.start = now
            self.first_media.set()
        return now - self.start <= self.duration


async def consume(track: MediaStreamTrack, stats: SlotStats, window: Window) -> None:
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        stats.frames_total += 1
        if not window.admit():
            continue
        stats.frames += 1
        if frame.pts is not None:
            if stats.first_pts is None:
                stats.first_pts = frame.pts
                stats.time_base = frame.time_base
            else:
                assert stats.last_pts is not None
                delta = (frame.pts - stats.last_pts) % (1 << 32)
                if delta < (1 << 31):  # forward; ignore reordering backwards
                    stats.unwrapped += delta
            stats.last_pts = frame.pts
        if stats.kind == "video":
            stats.size = f"{frame.width}x{frame.height}"
        elif stats.frames % 5 == 0:  # sample every 5th frame, cheap enough
            pcm = array("h", bytes(frame.planes[0]))
            stats.sum_sq += sum(s * s for s in pcm)
            stats.n_samples += len(pcm)


# --- signalling -----------------------------------------------------------
def check_answer(sdp: str) -> dict[str, Any]:
    """Summarise the answer's shape (DESIGN.md: ice-lite, BUNDLE, slots)."""
    lines = sdp.splitlines()
    media: list[dict[str, Any]] = []
    bundle: list[str] = []
    ice_lite = False
    for line in lines:
        if line.startswith("m="):
            media.append({"kind": line[2:].split(" ", 1)[0], "ssrcs": set(), "msid": False})
        elif line == "a=ice-lite":
            ice_lite = True
        elif line.startswith("a=group:BUNDLE"):
            bundle = line.split()[1:]
        elif media:
            m = media[-1]
            if line.startswith("a=mid:"):
                m["mid"] = line[6:]
            elif line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
                m["direction"] = line[2:]
            elif line.startswith("a=ssrc:"):
                m["ssrcs"].add(int(line[7:].split()[0]))
            elif line.startswith("a=msid:") or " msid:" in line:
                m["msid"] = True
            elif line.startswith("a=rtpmap:"):
                m.setdefault("codecs", []).append(line.split(" ", 1)[1].split("/")[0])
            elif line.startswith("a=candidate:"):
                m.setdefault("candidates", []).append(line[12:])
    for m in media:
        m["ssrcs"] = sorted(m["ssrcs"])
    return {"ice_lite": ice_lite, "bundle": bundle, "media": media}


def parse_colibri_link(link_header: Optional[str]) -> Optional[str]:
    if not link_header:
        return None
    for part in link_header.split(","):
        m = re.match(r'\s*<([^>]+)>\s*;\s*rel="?colibri-ws"?', part)
        if m:
            return m.group(1)
    return None


def mark_screen(sdp: str) -> str:
    """Marks the first sending video m-line as a screen (`a=content:slides`)."""
    out: list[str] = []
    in_video = False
    done = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        out.append(line)
        if in_video and not done and line.startswith("a=mid:"):
            out.append("a=content:slides")
            done = True
    return "\r\n".join(out)


async def moderator_mute(
    http: aiohttp.ClientSession,
    args: argparse.Namespace,
    owner: str,
    result: dict[str, Any],
) -> None:
    """POST .../endpoints/{owner}/mute with our own token (we are an owner)."""
    kinds = set(args.moderator_mute.split(","))
    body = {"audio": "audio" in kinds, "video": "video" in kinds}
    url = (
        f"{args.url.rstrip('/')}/conferences/{urllib.parse.quote(args.room, safe='')}"
        f"/endpoints/{owner}/mute"
    )
    try:
        async with http.post(
            url, json=body, headers={"Authorization": f"Bearer {args.token}"}
        ) as resp:
            result.setdefault("mute_statuses", []).append(resp.status)
    except Exception as exc:
        result.setdefault("mute_statuses", []).append(f"{type(exc).__name__}")


async def colibri_reader(
    session: aiohttp.ClientSession,
    url: str,
    result: dict[str, Any],
    args: Optional[argparse.Namespace] = None,
) -> None:
    classes: list[str] = result.setdefault("colibri_classes", [])
    sources: list[Any] = result.setdefault("colibri_sources", [])
    # Everything but source maps and connectivity, verbatim (issue 5 notices).
    events: list[Any] = result.setdefault("colibri_events", [])
    muted: set[str] = set()
    try:
        async with session.ws_connect(url, heartbeat=None) as ws:
            result["colibri_connected"] = True
            await ws.send_str(json.dumps({"colibriClass": "ClientHello"}))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    obj = json.loads(msg.data)
                except ValueError:
                    classes.append("<non-json>")
                    continue
                cls = obj.get("colibriClass", "<none>")
                classes.append(cls)
                if cls in ("VideoSourcesMap", "AudioSourcesMap"):
                    sources.extend(obj.get("mappedSources", []))
                    if args is not None and args.moderator_mute:
                        for s in obj.get("mappedSources", []):
                            owner = s.get("owner")
                            if owner and owner not in muted:
                                muted.add(owner)
                                await moderator_mute(session, args, owner, result)
                elif cls not in ("ServerHello", "EndpointConnectivityStatusChangeEvent"):
                    events.append(obj)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # reported, not fatal: media is the main check
        result["colibri_error"] = f"{type(exc).__name__}: {exc}"


# --- main -----------------------------------------------------------------
def build_pc(slots: int, rtx: bool, add_track: bool = False) -> RTCPeerConnection:
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )
    if add_track:
        # How most apps publish: addTrack makes sendrecv transceivers, which the
        # bridge answers sendrecv (a source and a slot on the same m-line).
        audio = pc.addTrack(ToneTrack())
        video = pc.addTrack(PatternTrack())
        for t in pc.getTransceivers():
            if t.sender is audio:
                prefer(t, "audio", "audio/opus", False)
            elif t.sender is video:
                prefer(t, "video", "video/VP8", rtx)
    else:
        prefer(pc.addTransceiver(ToneTrack(), direction="sendonly"), "audio", "audio/opus", False)
        prefer(pc.addTransceiver(PatternTrack(), direction="sendonly"), "video", "video/VP8", rtx)
    for _ in range(slots):
        prefer(pc.addTransceiver("audio", direction="recvonly"), "audio", "audio/opus", False)
        prefer(pc.addTransceiver("video", direction="recvonly"), "video", "video/VP8", rtx)
    return pc


def dtls_info(pc: RTCPeerConnection) -> dict[str, Any]:
    """What DTLS negotiated, read from aiortc's RTCDtlsTransport internals."""
    out: dict[str, Any] = {}
    for t in pc.getTransceivers():
        transport = t.sender.transport or t.receiver.transport
        if transport is None:
            continue
        out["dtls_state"] = transport.state
        out["dtls_role"] = getattr(transport, "_role", None)
        ssl = getattr(transport, "_ssl", None)
        if ssl is not None:
            try:
                prof = ssl.get_selected_srtp_profile()
                out["srtp_profile"] = prof.decode() if prof else None
            except Exception as exc:
                out["srtp_profile_error"] = str(exc)
            try:
                out["dtls_version"] = ssl.get_protocol_version_name()
                out["dtls_cipher"] = ssl.get_cipher_name()
            except Exception as exc:
                out["dtls_version_error"] = str(exc)
        ice_t = transport.transport
        try:
            pair = ice_t._connection._nominated.get(1)  # aioice internals
            if pair is not None:
                out["ice_pair"] = (
                    f"{pair.local_candidate.host}:{pair.local_candidate.port} -> "
                    f"{pair.remote_candidate.host}:{pair.remote_candidate.port}"
                )
        except Exception:
            pass
        break
    return out


async def rtp_stats(pc: RTCPeerConnection) -> dict[str, Any]:
    report = await pc.getStats()
    inbound = []
    outbound = []
    remote_lost = 0
    for s in report.values():
        if s.type == "inbound-rtp":
            inbound.append(
                {
                    "kind": s.kind,
                    "ssrc": s.ssrc,
                    "packets": s.packetsReceived,
                    "lost": s.packetsLost,
                    "jitter": s.jitter,
                }
            )
        elif s.type == "outbound-rtp":
            outbound.append({"kind": s.kind, "ssrc": s.ssrc, "packets": s.packetsSent})
        elif s.type == "remote-inbound-rtp":
            remote_lost += s.packetsLost or 0
    return {
        "packets_received": sum(i["packets"] or 0 for i in inbound),
        "packets_lost": sum(i["lost"] or 0 for i in inbound),
        "remote_packets_lost": remote_lost,
        "inbound": inbound,
        "outbound": outbound,
    }


async def wait_connected(pc: RTCPeerConnection, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pc.connectionState == "connected":
            return True
        if pc.connectionState in ("failed", "closed"):
            return False
        await asyncio.sleep(0.05)
    return False


async def run(args: argparse.Namespace, result: dict[str, Any]) -> int:
    pc = build_pc(args.slots, args.rtx, args.add_track)
    tasks: list[asyncio.Task[Any]] = []
    try:
        return await session(args, result, pc, tasks)
    finally:
        # Also reached when amain's deadline cancels us: always close the peer
        # connection (DTLS close_notify), bounded in time.
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(pc.close(), 5)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            log("pc.close() did not finish")


async def session(
    args: argparse.Namespace,
    result: dict[str, Any],
    pc: RTCPeerConnection,
    tasks: list[asyncio.Task[Any]],
) -> int:
    t0 = time.monotonic()
    # aiortc gathers all candidates inside setLocalDescription (no trickle).
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if args.screen:
        offer = mark_screen(offer)
    result["slot_mids"] = [
        t.mid for t in pc.getTransceivers() if t.direction in ("recvonly", "sendrecv")
    ]
    if args.print_offer:
        sys.stdout.write(offer)
        return 0

    window = Window(args.duration)
    slot_stats: list[SlotStats] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        mid = next(
            (t.mid for t in pc.getTransceivers() if t.receiver.track is track), None
        )
        st = SlotStats(track.kind, mid)
        slot_stats.append(st)
        tasks.append(asyncio.ensure_future(consume(track, st, window)))

    url = f"{args.url.rstrip('/')}/conferences/{urllib.parse.quote(args.room, safe='')}/endpoints"
    headers = {"Content-Type": "application/sdp"}
    if args.token_in_query:
        url += "?jwt=" + urllib.parse.quote(args.token, safe="")
    elif args.token:
        headers["Authorization"] = f"Bearer {args.token}"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        try:
            async with http.post(url, data=offer.encode(), headers=headers) as resp:
                status = resp.status
                body = await resp.text()
                location = resp.headers.get("Location")
                link = resp.headers.get("Link")
                ctype = resp.headers.get("Content-Type", "")
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            log(f"cannot reach the bridge at {args.url}: {type(exc).__name__}: {exc}")
            return 2
        result["status"] = status
        log(f"POST {args.url}/conferences/{args.room}/endpoints -> {status}")

        if status != 201:
            try:
                err = json.loads(body)
                result["error"] = err.get("error")
                result["message"] = err.get("message")
            except ValueError:
                result["error"] = None
                result["body"] = body[:500]
            result["content_type"] = ctype
            if args.expect_status is not None:
                return 0 if status == args.expect_status else 1
            return 0

        if args.verbose:
            log("answer SDP:\n" + body)
        result["location"] = location
        result["answer"] = check_answer(body)
        if args.expect_status is not None and args.expect_status != 201:
            log(f"expected status {args.expect_status}, got 201")
            return 1

        if args.colibri:
            link_path = parse_colibri_link(link)
            result["colibri_link"] = link_path is not None
            if link_path:
                ws_url = urllib.parse.urljoin(args.url.rstrip("/") + "/", link_path)
                ws_url = re.sub(r"^http", "ws", ws_url)
                tasks.append(
                    asyncio.ensure_future(colibri_reader(http, ws_url, result, args))
                )

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

        rc = 0
        if await wait_connected(pc, args.connect_timeout):
            result["connect_s"] = round(time.monotonic() - t0, 3)
            result.update(dtls_info(pc))
            try:
                await asyncio.wait_for(window.first_media.wait(), args.media_timeout)
                await asyncio.sleep(
                    max(0.0, window.start + window.duration - time.monotonic())  # type: ignore[operator]
                )
            except asyncio.TimeoutError:
                log(f"no media decoded within {args.media_timeout}s of connecting")
                rc = 1
            result.update(await rtp_stats(pc))
            # Keep sending so that the peers, which may have connected later,
            # get their full window too.
            await asyncio.sleep(args.linger)
        else:
            log(f"not connected after {args.connect_timeout}s: {pc.connectionState}")
            result["error"] = f"connection-{pc.connectionState}"
            result.update(dtls_info(pc))
            rc = 1

        video = [s for s in slot_stats if s.kind == "video"]
        audio = [s for s in slot_stats if s.kind == "audio"]
        result["video_frames"] = sum(s.frames for s in video)
        result["video_span_s"] = round(max((s.span_s() for s in video), default=0.0), 3)
        result["audio_frames"] = sum(s.frames for s in audio)
        result["slots"] = [s.as_json() for s in slot_stats]
        if rc == 0 and result["video_frames"] == 0 and result["audio_frames"] == 0:
            rc = 1

        if location:  # leave, best effort
            try:
                del_url = urllib.parse.urljoin(args.url.rstrip("/") + "/", location)
                del_headers = {} if args.token_in_query else {"Authorization": f"Bearer {args.token}"}
                if args.token_in_query:
                    del_url += ("&" if "?" in del_url else "?") + "jwt=" + urllib.parse.quote(args.token, safe="")
                async with http.delete(del_url, headers=del_headers) as dresp:
                    result["delete_status"] = dresp.status
            except Exception as exc:
                result["delete_status"] = f"{type(exc).__name__}"

        return rc


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:9090", help="bridge public listener")
    p.add_argument("--room", default="interop")
    p.add_argument("--host-address", default="127.0.0.1",
                   help="the one IPv4 host candidate (default loopback)")
    p.add_argument("--token", default="",
                   help="JWT, sent as Bearer unless --token-in-query; empty: no token")
    p.add_argument("--token-in-query", action="store_true", help="send the JWT as ?jwt=")
    p.add_argument("--duration", type=float, default=6.0, help="counting window, seconds")
    p.add_argument("--linger", type=float, default=3.0, help="keep sending after counting")
    p.add_argument("--slots", type=int, default=1, help="recvonly audio+video pairs")
    p.add_argument("--add-track", action="store_true",
                   help="publish with addTrack (sendrecv m-lines) instead of sendonly transceivers")
    p.add_argument("--expect-status", type=int, default=None)
    p.add_argument("--colibri", action="store_true", help="open the colibri websocket")
    p.add_argument("--screen", action="store_true",
                   help="mark the video m-line as a screen (a=content:slides)")
    p.add_argument("--moderator-mute", default="",
                   help="audio,video: mute every other endpoint as it appears in a "
                        "sources map (needs --colibri and an owner token)")
    p.add_argument("--rtx", action=argparse.BooleanOptionalAction, default=True,
                   help="offer video/rtx next to VP8 (as browsers do)")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    p.add_argument("--media-timeout", type=float, default=15.0)
    p.add_argument("--timeout", type=float, default=90.0, help="hard limit for the whole run")
    p.add_argument("--print-offer", action="store_true", help="print the SDP offer and exit")
    p.add_argument("--verbose", action="store_true", help="log the answer SDP to stderr")
    p.add_argument("--srtp-profiles", default="",
                   help="comma-separated OpenSSL SRTP profile names to offer, in order "
                        "(default: aiortc's own list, AES-256-GCM first)")
    return p.parse_args(argv)


def restrict_srtp_profiles(names: str) -> None:
    """Makes aiortc offer only these SRTP profiles in DTLS use_srtp, in this order."""
    from aiortc import rtcdtlstransport as dt

    known = {p.openssl_profile.decode(): p for p in
             (dt.SRTP_AEAD_AES_256_GCM, dt.SRTP_AEAD_AES_128_GCM, dt.SRTP_AES128_CM_SHA1_80)}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise SystemExit(f"--srtp-profiles: unknown {unknown}, expected some of {sorted(known)}")
    # RTCDtlsTransport copies the module-level list when it is created.
    dt.SRTP_PROFILES[:] = [known[n] for n in wanted]


async def amain(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {}
    try:
        rc = await asyncio.wait_for(run(args, result), args.timeout)
    except asyncio.TimeoutError:
        log(f"gave up after {args.timeout}s")
        result["error"] = "client-timeout"
        rc = 1
    if not args.print_offer and rc != 2:
        print(json.dumps(result, sort_keys=True), flush=True)
    return rc


def main() -> None:
    args = parse_args(sys.argv[1:])
    global _HOST_ADDRESS
    _HOST_ADDRESS = args.host_address
    if args.srtp_profiles:
        restrict_srtp_profiles(args.srtp_profiles)
    loop = asyncio.new_event_loop()
    rc = loop.run_until_complete(amain(args))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter and event-loop teardown: aiortc's leftover tasks can keep
    # it waiting, and the result is already printed.
    os._exit(rc)


if __name__ == "__main__":
    main()
