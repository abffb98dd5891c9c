"""RGB LED drivers for the school flag display: an RGB LED on three PWM pins, or a WS2812 chain.

Both take a colour as (r, g, b), each 0..255, and show it at once.
- `PWMRGBLed`: a 4-leg RGB LED (with a resistor on each colour leg) on three `machine.PWM`
  channels. A common-cathode LED lights when its pin is high, a common-anode one when it is
  low, so the duty is inverted for it (`duty_u16`). Linear: no gamma correction, since a
  flag colour only has to be told apart from its neighbours, not matched on a screen.
- `PixelLed`: a WS2812 / NeoPixel chain through MicroPython's `neopixel.NeoPixel`; every
  pixel shows the same colour (a ring or a strip behind a printed flag).
Refuses nothing: values outside 0..255 are clamped, as a colour from the network may be.
RAM: the driver object; the NeoPixel buffer is 3 bytes per pixel.
"""

TYPE_CHECKING = False  # MicroPython has no typing module; mypy treats this name as True
if TYPE_CHECKING:
    from fwtypes import PixelStrip, PWMChannel

OFF = (0, 0, 0)


def clamp_level(level: int) -> int:
    return 0 if level < 0 else 255 if level > 255 else level


def duty_u16(level: int, common_anode: bool) -> int:
    """The 16-bit PWM duty that lights one colour leg at `level` (0..255)."""
    duty = clamp_level(level) * 257  # 255 -> 65535
    return 65535 - duty if common_anode else duty


class PWMRGBLed:
    def __init__(self, red: "PWMChannel", green: "PWMChannel", blue: "PWMChannel", common_anode: bool = False) -> None:
        self.channels = (red, green, blue)
        self.common_anode = common_anode
        self.colour = OFF
        self.show(OFF)

    def show(self, rgb: "tuple[int, int, int]") -> None:
        for channel, level in zip(self.channels, rgb):
            channel.duty_u16(duty_u16(level, self.common_anode))
        self.colour = rgb


class PixelLed:
    def __init__(self, strip: "PixelStrip", count: int) -> None:
        self.strip = strip
        self.count = count
        self.colour = OFF
        self.show(OFF)

    def show(self, rgb: "tuple[int, int, int]") -> None:
        pixel = (clamp_level(rgb[0]), clamp_level(rgb[1]), clamp_level(rgb[2]))
        for i in range(self.count):
            self.strip[i] = pixel
        self.strip.write()
        self.colour = rgb
