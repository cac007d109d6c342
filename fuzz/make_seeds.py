#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (small, committed).

Run from anywhere: `python3 fuzz/make_seeds.py`. The STUN vectors are RFC 5769's
(as in bridge/src/proto/stun.rs's tests); the aiortc-like offer is sdp.rs's test
offer; the rest are hand-built packets of each kind the bridge reads.
"""
import base64, hashlib, hmac, json, os, re, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- STUN: RFC 5769 vectors from stun.rs ------------------------------------
stun_src = open(os.path.join(ROOT, "bridge/src/proto/stun.rs")).read()
vectors = {}
for name, body in re.findall(r"const (REQ_2_1|RESP_2_2|RESP_2_3|REQ_2_4): \[u8; \d+\] = \[(.*?)\];", stun_src, re.S):
    vectors[name] = bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", body))
assert len(vectors) == 4, vectors.keys()
for name, v in vectors.items():
    out("stun", name.lower(), v)


def stun_attr(t, v):
    pad = (4 - len(v) % 4) % 4
    return struct.pack("!HH", t, len(v)) + v + b"\0" * pad


def binding_body(username, controlling=True, use_candidate=True):
    attrs = stun_attr(0x0006, username)
    attrs += stun_attr(0x802A if controlling else 0x8029, struct.pack("!Q", 0x1122334455667788))
    attrs += stun_attr(0x0024, struct.pack("!I", 0x6E0001FF))
    if use_candidate:
        attrs += stun_attr(0x0025, b"")
    return struct.pack("!HHI", 0x0001, len(attrs), 0x2112A442) + bytes(range(12)) + attrs


# ice target: mode byte 1 = the target signs the body with the agent's password.
out("ice", "signed_binding_nominating", b"\x01" + binding_body(b"bridge:peer"))
out("ice", "signed_binding_controlled", b"\x03" + binding_body(b"bridge:peer", False, False))
out("ice", "unsigned_rfc5769", b"\x00" + vectors["REQ_2_1"])


# --- RTP --------------------------------------------------------------------
def rtp(pt, seq, ts, ssrc, exts=(), payload=b"", marker=False, padding=0, csrcs=()):
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if exts else 0) | len(csrcs)
    h = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    for c in csrcs:
        h += struct.pack("!I", c)
    if exts:
        block = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in exts)
        block += b"\0" * ((4 - len(block) % 4) % 4)
        h += struct.pack("!HH", 0xBEDE, len(block) // 4) + block
    body = h + payload
    if padding:
        body += b"\0" * (padding - 1) + bytes([padding])
    return body


VP8_KEY = bytes([0x90, 0x80, 0x00, 0x30, 0x01, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00])
VP8_DELTA = bytes([0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x31, 0x00, 0x00])
OPUS = bytes([0x78, 0x0B, 0xE4, 0xC1, 0x36])
out("rtp", "vp8_keyframe_mid_abs_twcc", rtp(97, 1000, 90000, 2222, [(1, b"1"), (3, b"\x12\x34\x56"), (5, b"\x00\x07")], VP8_KEY, marker=True))
out("rtp", "vp8_delta_tl0", rtp(97, 1001, 93000, 2222, [], VP8_DELTA))
out("rtp", "opus_audio_level", rtp(96, 7, 960, 1111, [(2, b"\x9e")], OPUS))
out("rtp", "rtx_with_osn", rtp(98, 5, 90000, 3333, [], b"\x03\xe8" + VP8_KEY))
out("rtp", "padding_only", rtp(98, 6, 90000, 3333, [], b"", padding=8))
out("rtp", "csrcs", rtp(96, 8, 1920, 1111, [], OPUS, csrcs=(5, 6)))
two_byte = struct.pack("!BBHII", 0x90, 96, 9, 2880, 1111) + struct.pack("!HH", 0x1000, 2) + b"\x01\x02ab\x02\x01\x7f\x00" + OPUS
out("rtp", "two_byte_extensions", two_byte)
# VP8 L1T3 as Chrome sends it: I L T K, picture id, TL0PICIDX, TID 2 Y KEYIDX 5.
out("rtp", "vp8_l1t3_tid2_sync", rtp(97, 1002, 96000, 2222, [], bytes([0x90, 0xF0, 0x80, 0x02, 0x05, 0xA5, 0x31, 0x00, 0x00])))
# H264 key frame (STAP-A: SPS of a 720x404 stream, PPS, IDR start) and an FU-A start.
SPS = bytes([0x67, 66, 192, 30, 217, 0, 180, 53, 249, 225, 0, 0, 3, 0, 1, 0, 0, 3, 0, 60, 15, 22, 46, 72])
H264_KEY = bytes([0x78, 0x00, len(SPS)]) + SPS + bytes([0x00, 0x04, 0x68, 0xCE, 0x3C, 0x80, 0x00, 0x03, 0x65, 0xB8, 0x00])
out("rtp", "h264_stap_a_sps_pps_idr", rtp(102, 1, 90000, 4444, [], H264_KEY, marker=False))
out("rtp", "h264_fu_a_idr_start", rtp(102, 2, 90000, 4444, [], bytes([0x7C, 0x85, 0x88, 0x80, 0x00])))
# VP9 key frame: I L B E V descriptor with SS (1280x720), uncompressed header.
VP9_KEY = bytes([0xAE, 0x92, 0x34, 0x00, 0x09, 0x18, 0x05, 0x00, 0x02, 0xD0, 0x01, 0x00,
                 0x82, 0x49, 0x83, 0x42, 0x20, 0x4F, 0xF0, 0x2C, 0xF0])
out("rtp", "vp9_keyframe_ss", rtp(98, 1, 90000, 5555, [], VP9_KEY))
# AV1 new coded video sequence: sequence header OBU (1280x720) then a frame OBU.
AV1_KEY = bytes([0x68, 0x09, 0x08, 0x00, 0x00, 0x00, 0x42, 0xA6, 0x7F, 0xD9, 0xE0, 0x30, 0x10, 0x00])
out("rtp", "av1_sequence_header", rtp(45, 1, 90000, 6666, [], AV1_KEY))


# --- RTCP -------------------------------------------------------------------
def rtcp(pt, count, body):
    assert len(body) % 4 == 0
    return struct.pack("!BBH", 0x80 | count, pt, len(body) // 4) + body


report_block = struct.pack("!IIIIII", 2222, 0x01000010, 1500, 30, 0x12345678, 0x100)
sr = rtcp(200, 1, struct.pack("!IIIII", 1111, 0xE1234567, 0x89ABCDEF, 96000, 100) + struct.pack("!I", 20000) + report_block)
rr = rtcp(201, 1, struct.pack("!I", 1111) + report_block)
sdes = rtcp(202, 1, struct.pack("!I", 1111) + b"\x01\x04abcd\x00\x00")
bye = rtcp(203, 2, struct.pack("!II", 1111, 2222))
nack = rtcp(205, 1, struct.pack("!II", 1111, 2222) + struct.pack("!HH", 1000, 0b1010_0000_0000_0101))
pli = rtcp(206, 1, struct.pack("!II", 1111, 2222))
fir = rtcp(206, 4, struct.pack("!II", 1111, 0) + struct.pack("!IB3x", 2222, 7))
remb = rtcp(206, 15, struct.pack("!II", 1111, 0) + b"REMB" + bytes([1, (3 << 2) | 0x01, 0x86, 0xA0]) + struct.pack("!I", 2222))
# TWCC: base 100, 6 packets: one run-length chunk (2 received small) + one status vector.
twcc_body = struct.pack("!IIHH", 1111, 2222, 100, 6) + bytes([0x01, 0x02, 0x03, 0x04])
twcc_body += struct.pack("!HH", 0x2002, 0xE540) + bytes([4, 8, 12, 0xFF, 0xF0, 16])
twcc_body += b"\0" * ((4 - len(twcc_body) % 4) % 4)
twcc = rtcp(205, 15, twcc_body)
out("rtcp", "sr_sdes", sr + sdes)
out("rtcp", "rr_nack_pli", rr + nack + pli)
out("rtcp", "fir_remb_bye", fir + remb + bye)
out("rtcp", "twcc", rr + twcc)
out("rtcp", "twcc_body_alone", twcc_body)


# --- SDP offers -------------------------------------------------------------
sdp_src = open(os.path.join(ROOT, "bridge/src/proto/sdp.rs")).read()
m = re.search(r'const AIORTC_LIKE_OFFER: &str = "(.*?)";', sdp_src, re.S)
aiortc = m.group(1).replace("\\r\\n\\\n", "\r\n").replace("\\r\\n", "\r\n")
out("sdp", "aiortc_like", aiortc)
FP = ":".join(["AB"] * 32)
chrome = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0 1 2", "a=extmap-allow-mixed", "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0", "a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host generation 0",
    "a=ice-ufrag:Chr0", "a=ice-pwd:chromechromechromechrome", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + FP, "a=setup:actpass", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv", "a=msid:stream audio0", "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000", "a=rtpmap:13 CN/8000", "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000", "a=ssrc:1111 cname:chrome", "a=ssrc:1111 msid:stream audio0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Chr0", "a=ice-pwd:chromechromechromechrome", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + FP, "a=setup:actpass", "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendrecv", "a=msid:stream video0", "a=rtcp-mux", "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000", "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
    "a=ssrc-group:FID 2222 3333", "a=ssrc:2222 cname:chrome", "a=ssrc:2222 msid:stream video0",
    "a=ssrc:3333 cname:chrome", "a=ssrc:3333 msid:stream video0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=mid:2", "a=recvonly", "a=rtcp-mux",
    "a=content:slides", "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rid:h send", "a=rid:l send", "a=simulcast:send h;l",
    "",
])
out("sdp", "chrome_like", chrome)


# --- the whole shard ----------------------------------------------------------
def op(tag, data):
    return bytes([tag]) + struct.pack("<H", len(data)) + data


shard_raw = b"\x00" + op(0, binding_body(b"x:y")) + op(0, bytes([22, 0xFE, 0xFD]) + b"\0" * 10) + op(0, rtp(96, 1, 2, 1111, [], OPUS)) + op(4, b"\x64") + op(1, vectors["REQ_2_1"]) + op(5, b"\x01\x02")
out("shard", "unconnected_mixed", shard_raw)
media = b"\x01"
for i in range(4):
    media += op(2, rtp(111, 10 + i, 960 * i, 0x1111, [(1, b"\x9e"), (4, b"0")], OPUS))
    media += op(2, rtp(96, 20 + i, 3000 * i, 0x2222, [(4, b"1"), (3, struct.pack("!H", i))], VP8_KEY if i == 0 else VP8_DELTA, marker=True))
media += op(2, rtp(97, 1, 3000, 0x3333, [], struct.pack("!H", 21) + VP8_DELTA))
media += op(3, struct.pack("!BBH", 0x80, 201, 1) + struct.pack("!I", 0x1111))
media += op(3, rtcp(205, 1, struct.pack("!II", 0x1111, 0x2222) + struct.pack("!HH", 20, 3)))
media += op(3, rtcp(206, 1, struct.pack("!II", 0x1111, 0x2222)))
media += op(3, remb)
media += op(3, rtcp(205, 15, twcc_body))
media += op(4, b"\x32") + op(0, b"\x80\xc8\x00\x01garbage!")
out("shard", "connected_media_and_feedback", media)


# --- tokens -----------------------------------------------------------------
SECRET = b"fuzz-secret-0123456789"
NOW = 1_700_000_000
claims = {
    "iss": "ringbridge", "aud": "ringbridge", "sub": "meet.example.com", "room": "room1",
    "exp": NOW + 3600, "nbf": NOW - 10, "iat": NOW - 10, "jti": "abc",
    "context": {"user": {"id": "u1", "name": "Alice", "affiliation": "owner", "moderator": True},
                "features": {"screen-sharing": "true", "recording": False}},
}
out("token", "claims_owner", b"\x01" + json.dumps(claims).encode())
out("token", "claims_wildcard_room_member", b"\x03" + json.dumps(dict(claims, room="*", context={"user": {"affiliation": "member"}})).encode())
out("token", "header_kid_and_claims", b"\x01" + b'{"alg":"HS256","typ":"JWT","kid":"k1"}' + b"\xff" + json.dumps(claims).encode())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(claims).encode())
sig = b64(hmac.new(SECRET, signing_input, hashlib.sha256).digest())
out("token", "raw_valid_hs256", b"\x00" + signing_input + b"." + sig)
out("token", "raw_alg_none", b"\x00" + b64(b'{"alg":"none"}') + b"." + b64(json.dumps(claims).encode()) + b".")


# --- colibri ----------------------------------------------------------------
for name, msg in [
    ("endpoint_message_broadcast", {"colibriClass": "EndpointMessage", "msgPayload": {"type": "e2e", "x": [1, 2]}}),
    ("endpoint_message_to", {"colibriClass": "EndpointMessage", "to": "someone", "msgPayload": {}}),
    ("source_video_type_desktop", {"colibriClass": "SourceVideoTypeMessage", "sourceName": "$FROM-v0", "videoType": "desktop"}),
    ("client_hello", {"colibriClass": "ClientHello"}),
    ("receiver_video_constraints", {"colibriClass": "ReceiverVideoConstraints", "lastN": 3, "constraints": {"a-v0": {"maxHeight": 180}}}),
]:
    out("colibri", name, json.dumps(msg))


# --- configuration ----------------------------------------------------------
out("config", "default_config", open(os.path.join(ROOT, "bridge/src/default-config.toml")).read())
out("config", "small", '[media]\nports = "10000-10100"\n\n[auth]\napp_secret = "s3cret"\nleeway_s = 5\n\n[http]\nlisten = "127.0.0.1:8080"\n')
