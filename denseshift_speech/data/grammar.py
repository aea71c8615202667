"""An English grammar of everyday spoken requests and remarks: the text source of the
synthetic ASR corpus written by :mod:`denseshift_speech.data.synth`.

The sentences are what a person says to a voice assistant or to someone at home:
commands (lights, alarms, timers, music), numbers and arithmetic, times and dates,
calendar entries, reminders and messages, weather, travel, shopping and cooking, reading
and the news, questions ("WHAT TIME DOES THE LIBRARY OPEN ON SATURDAY") and short
statements ("THE TRAIN TO BOSTON LEAVES AT HALF PAST SEVEN").  :func:`device_utterance`
draws what people also say to a device: single words, short commands, digit strings.

Text format: upper-case words made only of ``A-Z`` and the apostrophe, single spaces,
no punctuation, numbers spelled out, as in LibriSpeech transcripts.  Only common English
words and well-known place names are used, so that a text-to-speech engine (espeak-ng)
pronounces them correctly.

Structure: :data:`TEMPLATES` is a table of ``(weight, template)``; a template is a string
in a small notation, and so is every entry of the word lists in :data:`SLOTS`:

* ``{name}`` -- a slot: one entry of the list ``SLOTS[name]`` (uniformly, or by weight
  where entries are written ``(weight, text)``), itself expanded;
* ``{n:LO:HI}`` -- a whole number from ``LO`` to ``HI`` (at most 999), spelled out;
* ``[A|B|C]`` -- one of the alternatives, uniformly; an alternative may be empty
  (``[PLEASE|]``) and alternatives nest.

:func:`sentence` draws one sentence and is a pure function of the state of the
``random.Random`` it is given.  :func:`vocabulary` is every word the grammar can produce,
computed from the templates and lists, not by sampling (1,346 words);
:func:`length_bounds` gives the shortest and longest sentence the same way (4 and 18
words; about 8 on average).  The lists are sized and the weights set so that word use is
not too skewed: 3,000 sentences hold about 1,300 distinct words, about 1,100 of them
three times or more, and a training set of that size leaves about 0.3% of the words of a
test set drawn the same way unseen.  :func:`sentence_within` draws a sentence made only
of given words (a training set's), for held-out text.  ``tests/test_grammar.py`` holds
the lower bounds (1,000 words; 1,000 distinct and 900 seen three times in 3,000
sentences; 3 to 20 words a sentence).
"""
from __future__ import annotations

import bisect
import itertools
import random
import re
from functools import lru_cache

# ---------------------------------------------------------------------------------------
# numbers, times, dates

ONES = ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
TEENS = ["TEN", "ELEVEN", "TWELVE", "THIRTEEN", "FOURTEEN", "FIFTEEN", "SIXTEEN",
         "SEVENTEEN", "EIGHTEEN", "NINETEEN"]
TENS = ["TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY"]
ORDINALS = ["FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH",
            "NINTH", "TENTH", "ELEVENTH", "TWELFTH", "THIRTEENTH", "FOURTEENTH",
            "FIFTEENTH", "SIXTEENTH", "SEVENTEENTH", "EIGHTEENTH", "NINETEENTH", "TWENTIETH"]
DAY_ORDINALS = ORDINALS + ["TWENTY " + o for o in ORDINALS[:9]] + ["THIRTIETH",
                                                                  "THIRTY FIRST"]
MONTHS = ["JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
          "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER"]
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
DAYPARTS = ["IN THE MORNING", "IN THE AFTERNOON", "IN THE EVENING", "AT NIGHT"]

# a time of day without the part of the day: "HALF PAST SEVEN", "TEN FORTY FIVE"
TIMES = [(3, "{n:1:12}"), (2, "{n:1:12} O'CLOCK"), (3, "{n:1:12} {n:10:59}"),
         (1, "{n:1:12} OH {n:1:9}"), (2, "HALF PAST {n:1:12}"), (1, "QUARTER PAST {n:1:12}"),
         (1, "QUARTER TO {n:1:12}"), (1, "[FIVE|TEN|TWENTY|TWENTY FIVE] [PAST|TO] {n:1:12}")]
# ... sometimes with it: "SEVEN IN THE MORNING"
CLOCKS = [(6, "{time}"), (4, "{time} {daypart}"), (1, "[NOON|MIDNIGHT]")]
DATES = ["THE {dayord} OF {month}", "{month} {dayord}"]
# after a verb phrase: "WAKE ME UP AT SEVEN TOMORROW", "WHAT IS ON MY CALENDAR NEXT WEEK"
WHEN = ["TODAY", "TOMORROW", "TONIGHT", "THIS WEEKEND", "NEXT WEEK", "THIS MORNING",
        "THIS AFTERNOON", "THIS EVENING", "TOMORROW MORNING", "TOMORROW NIGHT",
        "LATER TODAY", "NEXT MONTH", (4, "ON {day}"), (3, "ON {date}"), (2, "NEXT {day}"),
        "ON {day} [MORNING|AFTERNOON|EVENING|NIGHT]", "IN {n:2:10} DAYS", "IN {month}"]
# after FOR / BEFORE / UNTIL: "CANCEL MY APPOINTMENT FOR FRIDAY"
DAY_REFS = ["TODAY", "TOMORROW", "TONIGHT", "THIS WEEKEND", "NEXT WEEK", "TOMORROW MORNING",
            (3, "{day}"), (2, "NEXT {day}"), (2, "{date}")]
PAST_WHEN = ["YESTERDAY", "LAST NIGHT", "LAST WEEK", "THIS MORNING", "EARLIER TODAY",
             "LAST WEEKEND", "LAST MONTH", "A FEW DAYS AGO", "ON {day}", "LAST {day}",
             "{n:2:9} DAYS AGO", "IN {month}", "YESTERDAY [MORNING|AFTERNOON|EVENING]"]
DURATIONS = [(4, "{n:2:59} MINUTES"), "{n:2:9} HOURS", "{n:10:50} SECONDS", "ONE MINUTE",
             "AN HOUR", "HALF AN HOUR", "AN HOUR AND A HALF", "A QUARTER OF AN HOUR"]

# ---------------------------------------------------------------------------------------
# people and places

FIRST_NAMES = ["ANNA", "DAVID", "MARIA", "JOHN", "SARAH", "PETER", "EMMA", "THOMAS", "LUCY",
               "JAMES", "MICHAEL", "ROBERT", "WILLIAM", "RICHARD", "DANIEL", "ANDREW", "PAUL",
               "MARK", "GEORGE", "HENRY", "JACK", "SAM", "BEN", "TOM", "ALICE", "GRACE",
               "HELEN", "KATE", "LAURA", "RACHEL", "SOPHIE", "OLIVIA", "EMILY", "HANNAH",
               "JULIA", "CLAIRE", "MARY", "SUSAN", "LINDA", "ROSE", "AMY", "JANE", "MARTIN",
               "SIMON"]
RELATIVES = ["MOTHER", "FATHER", "SISTER", "BROTHER", "AUNT", "UNCLE", "COUSIN", "GRANDMOTHER",
             "GRANDFATHER", "GRANDMA", "GRANDPA", "WIFE", "HUSBAND", "SON", "DAUGHTER", "BOSS",
             "NEIGHBOR", "FRIEND", "BEST FRIEND", "MOM", "DAD", "PARTNER", "ROOMMATE"]
PROFESSIONALS = ["DOCTOR", "DENTIST", "PLUMBER", "ELECTRICIAN", "MECHANIC", "VET",
                 "BABYSITTER", "LANDLORD", "TEACHER", "NURSE"]
PEOPLE = [(5, "{name}"), (3, "MY {relative}"), (2, "THE {professional}")]
JOBS = ["A TEACHER", "A NURSE", "A DOCTOR", "A FARMER", "A PILOT", "A CHEF", "A LAWYER",
        "AN ENGINEER", "A SCIENTIST", "A WRITER", "A MUSICIAN", "A POLICE OFFICER",
        "A LIBRARIAN", "A BUS DRIVER"]
CITIES = ["LONDON", "PARIS", "BERLIN", "MADRID", "TORONTO", "BOSTON", "CHICAGO", "DUBLIN",
          "SYDNEY", "TOKYO", "ROME", "VIENNA", "NEW YORK", "SEATTLE", "DENVER", "DALLAS",
          "HOUSTON", "ATLANTA", "MIAMI", "PHOENIX", "DETROIT", "PORTLAND", "NASHVILLE",
          "SAN FRANCISCO", "MONTREAL", "VANCOUVER", "MANCHESTER", "LIVERPOOL", "OXFORD",
          "CAMBRIDGE", "BRISTOL", "AMSTERDAM", "LISBON", "ATHENS", "STOCKHOLM", "CAIRO",
          "SINGAPORE", "MELBOURNE", "WASHINGTON", "VENICE", "BARCELONA", "LOS ANGELES"]
COUNTRIES = ["FRANCE", "SPAIN", "ITALY", "GERMANY", "CANADA", "MEXICO", "JAPAN", "CHINA",
             "INDIA", "BRAZIL", "IRELAND", "SCOTLAND", "ENGLAND", "AUSTRALIA", "GREECE",
             "PORTUGAL", "EGYPT", "SWEDEN", "NORWAY", "POLAND", "KENYA", "ICELAND",
             "NEW ZEALAND", "SWITZERLAND"]
DESTINATIONS = [(3, "{city}"), (1, "{country}")]
LANGUAGES = ["FRENCH", "SPANISH", "GERMAN", "ITALIAN", "JAPANESE", "CHINESE", "PORTUGUESE",
             "DUTCH", "GREEK", "RUSSIAN", "ARABIC", "SWEDISH", "POLISH", "KOREAN"]
GREETINGS = ["GOOD MORNING", "THANK YOU", "HELLO", "GOODBYE", "HOW ARE YOU",
             "SEE YOU TOMORROW", "HAPPY BIRTHDAY", "GOOD NIGHT", "EXCUSE ME",
             "I DON'T UNDERSTAND"]
TOWN_PLACES = ["LIBRARY", "MUSEUM", "BANK", "POST OFFICE", "PHARMACY", "SUPERMARKET",
               "BAKERY", "GYM", "SWIMMING POOL", "PARK", "CINEMA", "THEATER", "HOSPITAL",
               "SCHOOL", "UNIVERSITY", "TRAIN STATION", "BUS STATION", "AIRPORT", "HOTEL",
               "RESTAURANT", "COFFEE SHOP", "MARKET", "BOOKSTORE", "HAIRDRESSER", "CHURCH",
               "ZOO", "BEACH", "STADIUM", "ART GALLERY", "CITY HALL", "GAS STATION",
               "GARDEN CENTER", "HARDWARE STORE", "SHOPPING CENTER", "POLICE STATION",
               "TOY STORE", "PET SHOP", "ICE RINK", "SPORTS CENTER", "PLAYGROUND"]
NEAR_PLACES = ["AROUND THE CORNER", "ACROSS THE STREET", "NEXT TO THE {town_place}",
               "ON THE OTHER SIDE OF TOWN", "A FEW MINUTES FROM HERE", "BEHIND THE {town_place}",
               "OPPOSITE THE {town_place}", "AT THE END OF OUR STREET", "NEAR THE {town_place}",
               "IN THE CITY CENTER"]
SHOPS = ["SUPERMARKET", "BAKERY", "BOOKSTORE", "SHOE SHOP", "TOY STORE", "HARDWARE STORE",
         "GARDEN CENTER", "FLOWER SHOP", "PET SHOP", "CLOTHES SHOP", "FURNITURE STORE",
         "DEPARTMENT STORE", "MARKET", "SHOPPING CENTER"]

# ---------------------------------------------------------------------------------------
# the home

ROOMS = ["KITCHEN", "BEDROOM", "BATHROOM", "LIVING ROOM", "GARAGE", "OFFICE", "HALLWAY",
         "GARDEN", "DINING ROOM", "BASEMENT", "ATTIC", "LAUNDRY ROOM", "GUEST ROOM", "PORCH",
         "STUDY", "PLAYROOM"]
DEVICES = ["LIGHTS", "HEATING", "FAN", "RADIO", "TELEVISION", "OVEN", "LAMP", "MUSIC",
           "COFFEE MACHINE", "WASHING MACHINE", "DISHWASHER", "AIR CONDITIONING", "HEATER",
           "KETTLE", "DRYER", "PRINTER", "COMPUTER", "SPEAKERS", "CEILING LIGHT", "NIGHT LIGHT"]
# consonant first ("A ... SCARF")
COLORS = ["RED", "BLUE", "GREEN", "YELLOW", "WHITE", "PURPLE", "PINK", "BROWN", "BLACK",
          "GRAY", "DARK BLUE"]
LIGHT_SETTINGS = ["RED", "BLUE", "GREEN", "YELLOW", "WHITE", "ORANGE", "PURPLE", "BRIGHTER",
                  "DARKER"]
DOORS = ["GARAGE DOOR", "FRONT DOOR", "BACK DOOR", "WINDOWS", "CURTAINS", "BLINDS", "GATE",
         "KITCHEN WINDOW"]
# things one carries and can lose: "HAVE YOU SEEN MY ..."
BELONGINGS = ["KEYS", "WALLET", "PHONE", "GLASSES", "UMBRELLA", "JACKET", "COAT", "SHOES",
              "BOOTS", "SCARF", "GLOVES", "BAG", "BACKPACK", "LAPTOP", "CHARGER", "BOOK",
              "NOTEBOOK", "HEADPHONES", "WATCH", "RING", "NECKLACE", "SUNGLASSES", "PASSPORT",
              "TICKETS", "CAMERA", "PURSE", "LUNCH BOX", "WATER BOTTLE", "RAINCOAT",
              "SLIPPERS", "SWEATER", "HAT", "CREDIT CARD", "LIBRARY CARD", "HOMEWORK",
              "MEDICINE"]
# things that stay at home: "WHERE DO WE KEEP THE ..."
HOME_ITEMS = ["TOWELS", "BLANKETS", "PILLOWS", "SHEETS", "CANDLES", "BATTERIES", "FLASHLIGHT",
              "REMOTE CONTROL", "SCISSORS", "TAPE", "HAMMER", "LADDER", "BROOM", "BUCKET",
              "VACUUM CLEANER", "LIGHT BULBS", "TOOLBOX", "WINE GLASSES", "CUTTING BOARD",
              "FRYING PAN", "PLATES", "BOWLS", "MUGS", "SPOONS", "KNIVES", "NAPKINS", "MATCHES",
              "FIRST AID KIT", "WRAPPING PAPER", "STAMPS"]
FURNITURE = ["KITCHEN TABLE", "SOFA", "BED", "DESK", "SHELF", "BOOKSHELF", "CHAIR", "PIANO",
             "FRIDGE", "COFFEE TABLE", "CUPBOARD", "STAIRS"]
SPOTS = [(6, "[ON|UNDER|NEXT TO|BEHIND] THE {furniture}"), (2, "IN THE {room}"),
         "IN THE [TOP|BOTTOM|KITCHEN] DRAWER", "IN THE CAR", "BY THE FRONT DOOR",
         "IN MY [COAT|JACKET] POCKET", "AT [WORK|SCHOOL|THE OFFICE]", "ON THE [BUS|TRAIN]"]
CHORES = ["WATER THE PLANTS", "FEED THE {pet}", "WALK THE DOG", "TAKE OUT THE TRASH",
          "PAY THE RENT", "PAY THE [GAS|WATER|PHONE] BILL", "BUY A BIRTHDAY PRESENT FOR {person}",
          "PICK UP {person} FROM THE {town_place}", "CALL {person}", "RETURN THE LIBRARY BOOKS",
          "CLEAN THE {room}", "DO THE LAUNDRY", "IRON MY SHIRTS", "BOOK A HAIRCUT",
          "CHECK THE MAIL", "CHARGE MY [PHONE|LAPTOP|CAMERA|HEADPHONES]", "LOCK THE {door}",
          "TAKE MY MEDICINE", "SEND THE REPORT TO {person}", "RENEW MY PASSPORT",
          "FILL UP THE CAR", "MOW THE LAWN", "VACUUM THE {room}", "DEFROST THE FREEZER",
          "CHANGE THE BED SHEETS", "EMPTY THE DISHWASHER", "WASH THE CAR", "FIX THE {device}",
          "BUY SOME {food}", "BRING MY {belonging}", "POST THE LETTERS", "WRAP THE PRESENTS",
          "BAKE A CAKE FOR {person}", "PRACTICE THE {instrument}", "STUDY FOR THE EXAM",
          "CLEAN THE WINDOWS", "HANG UP THE WASHING", "SORT THE RECYCLING",
          "BOOK THE TRAIN TICKETS", "WRITE A THANK YOU CARD TO {person}", "REPLY TO {person}",
          "DRINK MORE WATER", "GO TO BED EARLY", "SET THE TABLE", "PUT THE {food} IN THE FRIDGE",
          "TAKE THE {food} OUT OF THE FREEZER", "MAKE AN APPOINTMENT WITH THE {professional}",
          "ORDER MORE {food}", "PACK MY {belonging}", "CLEAN OUT THE GARAGE",
          "PAINT THE FENCE", "FIND MY {belonging}", "THANK {person} FOR THE {gift}",
          "CANCEL THE {event}", "TURN OFF THE {device}", "BUY A NEW {clothes_sg}",
          "RETURN THE {clothes_pl} TO THE SHOP", "PUT THE {home_item} BACK"]

# ---------------------------------------------------------------------------------------
# food and cooking

# items counted one by one: "ADD SIX EGGS TO THE SHOPPING LIST"
COUNTABLE_FOODS = ["EGGS", "APPLES", "TOMATOES", "POTATOES", "ORANGES", "BANANAS", "LEMONS",
                   "ONIONS", "CARROTS", "PEPPERS", "CUCUMBERS", "PEACHES", "PEARS", "AVOCADOS",
                   "MUFFINS", "BAGELS", "SAUSAGES", "COOKIES", "BREAD ROLLS", "CUPCAKES",
                   "SANDWICHES", "BURGERS", "MANGOES"]
# other plurals: "THESE GRAPES ARE VERY SWEET"
PLURAL_FOODS = ["MUSHROOMS", "BEANS", "PEAS", "GRAPES", "CHERRIES", "STRAWBERRIES",
                "BLUEBERRIES", "CRACKERS", "CHIPS", "NUTS", "NOODLES", "OLIVES"]
MASS_FOODS = ["MILK", "BREAD", "BUTTER", "CHEESE", "RICE", "COFFEE", "TEA", "CHICKEN", "SUGAR",
              "FLOUR", "SALT", "OLIVE OIL", "HONEY", "JAM", "YOGURT", "CEREAL", "BACON", "HAM",
              "BEEF", "PORK", "LAMB", "SALMON", "TUNA", "SHRIMP", "SOUP", "CHOCOLATE", "PASTA",
              "SPINACH", "LETTUCE", "GARLIC", "GINGER", "CORN", "BROCCOLI", "OATMEAL",
              "PEANUT BUTTER", "ICE CREAM",
              "ORANGE JUICE", "APPLE JUICE", "LEMONADE", "SPARKLING WATER", "RED WINE",
              "WHITE WINE", "BEER", "CREAM", "VINEGAR", "KETCHUP", "MUSTARD", "CINNAMON",
              "PINEAPPLE", "WATERMELON", "DOG FOOD", "CAT FOOD"]
FOODS = [(2, "{countable_food}"), (1, "{plural_food}"), (5, "{mass_food}")]
PACKAGES = ["A LOAF OF BREAD", "A DOZEN EGGS", "A CARTON OF MILK",
            "A BAG OF [RICE|FLOUR|SUGAR|POTATOES|APPLES|ONIONS|CARROTS|NUTS|PASTA]",
            "A BOTTLE OF [MILK|RED WINE|WHITE WINE|OLIVE OIL|VINEGAR|KETCHUP|LEMONADE]",
            "A JAR OF [HONEY|JAM|PEANUT BUTTER|MUSTARD]",
            "A BOX OF [CEREAL|COOKIES|CRACKERS|TEA|CHOCOLATES|EGGS]",
            "A POUND OF [CHEESE|BUTTER|BEEF|HAM|BACON|GRAPES|CHERRIES|COFFEE|SALMON|SHRIMP]",
            "{n:2:9} CANS OF [TUNA|BEANS|SOUP|TOMATOES|CORN]", "TWO LITERS OF MILK",
            "A TUB OF [ICE CREAM|YOGURT|BUTTER]", "A BUNCH OF [BANANAS|GRAPES|FLOWERS]"]
DISHES = ["SPAGHETTI", "LASAGNA", "CHICKEN CURRY", "BEEF STEW", "VEGETABLE SOUP", "FRIED RICE",
          "APPLE PIE", "BANANA BREAD", "CHOCOLATE CAKE", "PANCAKES", "MEATBALLS",
          "ROAST CHICKEN", "GRILLED CHEESE", "POTATO SALAD", "FISH AND CHIPS", "TOMATO SOUP",
          "SCRAMBLED EGGS", "MASHED POTATOES", "PORRIDGE", "FRENCH TOAST", "TACOS", "PIZZA",
          "CHEESECAKE", "ROAST BEEF", "FRUIT SALAD", "PORK CHOPS"]
MEALS = ["BREAKFAST", "LUNCH", "DINNER", "SUPPER", "THE PARTY", "THE PICNIC"]
CUISINES = ["ITALIAN", "CHINESE", "MEXICAN", "INDIAN", "FRENCH", "JAPANESE", "GREEK", "THAI",
            "SPANISH", "TURKISH", "VEGETARIAN", "KOREAN"]
COOK_VERBS = ["BAKE", "BOIL", "FRY", "ROAST", "GRILL", "STEAM", "SIMMER", "TOAST", "COOK"]
PREP_VERBS = ["CHOP", "SLICE", "PEEL", "WASH", "DICE", "GRATE", "MASH", "CUT", "RINSE", "STIR",
              "MIX", "MELT"]
# an amount of an ingredient: "TWO CUPS OF FLOUR"
MEASURES = ["CUPS OF [FLOUR|SUGAR|MILK|RICE|WATER|OATMEAL]",
            "TABLESPOONS OF [BUTTER|OLIVE OIL|HONEY|SUGAR|CREAM|VINEGAR]",
            "TEASPOONS OF [SALT|CINNAMON|SUGAR|VANILLA|GINGER]",
            "GRAMS OF [BUTTER|CHEESE|CHOCOLATE|PASTA|SPINACH]",
            "OUNCES OF [CHEESE|CHOCOLATE|HAM|SALMON]", "POUNDS OF [BEEF|POTATOES|PORK|LAMB]",
            "SLICES OF [BREAD|BACON|HAM|CHEESE]", "HANDFULS OF [NUTS|SPINACH|BLUEBERRIES]"]
CONVERSIONS = ["OUNCES ARE IN A POUND", "GRAMS ARE IN A KILOGRAM", "FEET ARE IN A MILE",
               "INCHES ARE IN A FOOT", "METERS ARE IN A KILOMETER", "CUPS ARE IN A LITER",
               "DAYS ARE IN A YEAR", "MINUTES ARE IN A DAY", "SECONDS ARE IN AN HOUR"]
UNIT_PAIRS = ["MILES TO KILOMETERS", "POUNDS TO KILOGRAMS", "OUNCES TO GRAMS", "FEET TO METERS",
              "INCHES TO CENTIMETERS", "KILOGRAMS TO POUNDS", "KILOMETERS TO MILES",
              "CUPS TO GRAMS"]
TASTES = ["DELICIOUS", "FRESH", "SPICY", "SWEET", "SALTY", "TASTY", "HEALTHY", "COLD", "BURNT",
          "CRISPY", "CREAMY", "BITTER", "JUICY", "RIPE"]

# ---------------------------------------------------------------------------------------
# shopping

CLOTHES_SG = ["SHIRT", "DRESS", "SKIRT", "SWEATER", "JACKET", "COAT", "SCARF", "HAT", "BELT",
              "TIE", "RAINCOAT", "BLOUSE", "SUIT", "SWIMSUIT", "CARDIGAN", "VEST"]
CLOTHES_PL = ["TROUSERS", "JEANS", "SHORTS", "SHOES", "BOOTS", "SOCKS", "GLOVES", "SANDALS",
              "SNEAKERS", "SLIPPERS", "PAJAMAS", "RUNNING SHOES"]
SIZES = ["A SMALLER SIZE", "A LARGER SIZE", "SIZE {n:4:16}", "MEDIUM", "LARGE", "SMALL",
         "EXTRA LARGE", (4, "{color}")]
MONEY = [(3, "{n:2:99} DOLLARS"), (2, "{n:1:99} DOLLARS AND {n:1:99} CENTS"),
         "{n:2:99} POUNDS", "{n:2:99} EUROS", "{n:2:9} HUNDRED DOLLARS"]
GIFTS = ["BUNCH OF FLOWERS", "BOX OF CHOCOLATES", "BOOK", "SCARF", "BIRTHDAY CARD", "CAKE",
         "BOTTLE OF WINE", "PHOTO ALBUM", "PLANT", "TEDDY BEAR", "PUZZLE", "KITE", "VASE",
         "NECKLACE"]
OCCASIONS = ["A WEDDING", "WORK", "THE WINTER", "MY HOLIDAY", "A JOB INTERVIEW", "A PARTY",
             "THE SUMMER", "SCHOOL", "THE BEACH", "A DINNER PARTY"]
# consonant first ("I AM LOOKING FOR A ...")
SHOP_ADJ = ["CHEAP", "NICE", "WARM", "LIGHT", "COMFORTABLE", "SMART", "CASUAL",
            "WATERPROOF", "SIMPLE", "PRETTY", "COTTON", "WOOLEN", "LEATHER"]

# ---------------------------------------------------------------------------------------
# weather, travel, outings

WEATHER_ADJ = ["SUNNY", "CLOUDY", "RAINY", "WINDY", "FOGGY", "SNOWY", "STORMY", "COLD", "HOT",
               "WARM", "COOL", "FREEZING", "HUMID", "DRY", "WET", "MILD", "ICY", "CHILLY"]
WEATHER_NOUNS = ["RAIN", "SNOW", "HEAVY RAIN", "LIGHT SNOW", "STRONG WINDS", "FOG", "THUNDER",
                 "THUNDERSTORMS", "LIGHTNING", "HAIL", "SHOWERS", "SUNSHINE", "FROST", "ICE",
                 "DRIZZLE", "A HEAT WAVE"]
WEATHER_GEAR = ["AN UMBRELLA", "A COAT", "SUNSCREEN", "GLOVES", "A WARM JACKET", "A RAINCOAT",
                "BOOTS", "A HAT"]
TRANSPORT = ["TRAIN", "BUS", "FLIGHT", "FERRY", "LAST TRAIN", "NEXT BUS", "NIGHT BUS",
             "EARLY FLIGHT", "COACH", "BOAT"]
TRIP_STATUS = ["ON TIME", "DELAYED", "CANCELLED", "FULL", "LEAVING FROM PLATFORM {n:1:12}",
               "BOARDING AT GATE {n:1:40}"]
PACKING = ["SUNSCREEN", "A SWIMSUIT", "THE PASSPORTS", "THE CHARGER", "YOUR TOOTHBRUSH",
           "WARM CLOTHES", "THE TICKETS", "A TOWEL", "THE CAMERA", "SOME SNACKS"]
ACTIVITIES = ["GO SWIMMING", "GO FOR A WALK", "GO FOR A RUN", "PLAY {sport}", "WATCH A MOVIE",
              "VISIT {person}", "COOK DINNER", "BAKE COOKIES", "GO SHOPPING",
              "GO TO THE {town_place}", "MEET {name} FOR COFFEE", "RIDE OUR BIKES",
              "GO CAMPING", "GO FISHING", "GO SKIING", "PLAY CARDS", "PLAY CHESS",
              "PAINT THE {room}", "CLEAN THE HOUSE", "HAVE A PICNIC", "VISIT THE {town_place}",
              "SEE A PLAY", "READ A BOOK", "WORK IN THE GARDEN", "STAY AT HOME",
              "TAKE THE KIDS TO THE {town_place}", "GO DANCING", "HAVE {dish} FOR {meal}",
              "DRIVE TO {city}", "TRY THE NEW {cuisine} RESTAURANT",
              "LEARN TO PLAY THE {instrument}", "HAVE A BARBECUE", "GO TO A CONCERT",
              "FEED THE DUCKS"]
SPORTS = ["FOOTBALL", "SOCCER", "BASKETBALL", "BASEBALL", "TENNIS", "GOLF", "HOCKEY", "CRICKET",
          "RUGBY", "VOLLEYBALL"]
ANIMALS = ["A FOX", "AN OWL", "A DEER", "A SQUIRREL", "A HEDGEHOG", "A FROG", "A SNAKE",
           "A MOUSE", "A BUTTERFLY", "A DUCK"]
PETS = ["DOG", "CAT", "FISH", "RABBIT", "HAMSTER", "PARROT", "TURTLE", "HORSE", "PONY",
        "PUPPY"]

# ---------------------------------------------------------------------------------------
# music, reading, news

GENRES = ["JAZZ", "CLASSICAL MUSIC", "ROCK MUSIC", "THE NEWS", "RELAXING MUSIC", "A PODCAST",
          "COUNTRY MUSIC", "POP MUSIC", "OPERA", "MY FAVORITE SONGS", "CHRISTMAS SONGS",
          "AN AUDIOBOOK", "THE RADIO", "SOME PIANO MUSIC"]
INSTRUMENTS = ["PIANO", "GUITAR", "VIOLIN", "DRUMS", "FLUTE", "TRUMPET", "CELLO", "SAXOPHONE",
               "CLARINET", "HARP"]
NEWS_TOPICS = ["SPORTS", "BUSINESS", "POLITICS", "SCIENCE", "TECHNOLOGY", "HEALTH", "WEATHER",
               "LOCAL", "WORLD", "TRAVEL", "TRAFFIC"]
OFFICIALS = ["PRIME MINISTER", "PRESIDENT", "MAYOR", "GOVERNMENT", "CITY COUNCIL", "GOVERNOR",
             "POLICE", "SCHOOL BOARD", "UNION", "KING"]
ISSUES = ["ELECTION", "ECONOMY", "NEW BRIDGE", "TRAFFIC", "HOUSING PLAN", "SCHOOLS",
          "NEW HOSPITAL", "STRIKE", "FLOODS", "BUDGET", "TAXES", "FOOD PRICES"]
# written things, consonant first ("I AM READING A ...")
READING = ["NOVEL", "BOOK", "STORY", "MAGAZINE", "NEWSPAPER", "POEM", "COMIC", "BIOGRAPHY",
           "COOKBOOK", "MYSTERY", "FAIRY TALE", "DIARY"]
BOOK_TOPICS = ["A LITTLE GIRL AND HER DOG", "A FAMILY IN {city}", "AN OLD SAILOR",
               "A SMALL VILLAGE", "SPACE TRAVEL", "A DETECTIVE IN {city}",
               "THE HISTORY OF {country}", "TWO BROTHERS", "A HAUNTED HOUSE",
               "A TRIP AROUND THE WORLD", "DINOSAURS", "LIFE ON A FARM"]
SHOWS = ["MOVIE", "BOOK", "PLAY", "CONCERT", "GAME", "TRIP", "PARTY", "DAY", "WEEK", "MEAL",
         "STORY", "HOLIDAY", "WEDDING", "WEEKEND"]
EXPERIENCE_ADJ = ["GOOD", "GREAT", "NICE", "LOVELY", "WONDERFUL", "FANTASTIC", "TERRIBLE",
                  "AWFUL", "BORING", "EXCITING", "FUNNY", "SAD", "SCARY", "STRANGE",
                  "BEAUTIFUL", "INTERESTING", "LONG", "RELAXING", "AMAZING", "PERFECT",
                  "TIRING", "BRILLIANT"]
PLACE_ADJ = ["QUIET", "BUSY", "CROWDED", "EXPENSIVE", "CHEAP", "FRIENDLY", "COMFORTABLE",
             "CLEAN", "NOISY", "SMALL", "OLD", "MODERN", "POPULAR", "PEACEFUL"]
# consonant first, so "A {adverb} ..." reads right
ADVERBS = ["VERY", "REALLY", "QUITE", "PRETTY", "RATHER", "FAIRLY", "TRULY"]
FEELINGS = ["TIRED", "HUNGRY", "THIRSTY", "BORED", "HAPPY", "SAD", "COLD", "SICK", "BUSY",
            "SLEEPY", "WORRIED", "EXCITED", "NERVOUS", "LONELY"]
STATUS = [(4, "{feeling}"), "LATE", "STUCK IN TRAFFIC", "ON MY WAY", "RUNNING LATE",
          "AT THE {town_place}", "STILL AT WORK"]
SYMPTOMS = ["A HEADACHE", "A SORE THROAT", "A COLD", "A FEVER", "A COUGH", "A STOMACH ACHE",
            "BACK PAIN", "A TOOTHACHE", "THE FLU", "A RUNNY NOSE"]

# ---------------------------------------------------------------------------------------
# calendar

# consonant first ("I HAVE A ...")
EVENTS = ["MEETING", "DENTIST APPOINTMENT", "DOCTOR'S APPOINTMENT", "JOB INTERVIEW",
          "YOGA CLASS", "PIANO LESSON", "SWIMMING LESSON", "SOCCER PRACTICE", "BOOK CLUB",
          "STAFF MEETING", "TEAM LUNCH", "SCHOOL PLAY", "HAIRCUT", "CHECKUP", "VIDEO CALL",
          "BIRTHDAY PARTY", "DINNER PARTY", "WEDDING", "CONCERT", "FOOTBALL GAME",
          "TENNIS MATCH", "DRIVING LESSON", "GUITAR LESSON", "DANCE CLASS", "COOKING CLASS",
          "FLIGHT", "BARBECUE", "PICNIC", "GRADUATION", "PHONE CALL", "CAR SERVICE"]
# with an article, for "REMIND ME ABOUT ..."
EVENTS_A = ["A MEETING", "DINNER", "LUNCH", "A PHONE CALL", "THE TRAIN", "A PARTY",
            (4, "THE {event}"), (4, "MY {event}")]


def spell(n: int) -> str:
    """``n`` (0..999) in words: ``spell(342) == "THREE HUNDRED AND FORTY TWO"``."""
    if n < 0 or n > 999:
        raise ValueError(n)
    if n == 0:
        return "ZERO"
    words = []
    if n >= 100:
        words += [ONES[n // 100 - 1], "HUNDRED"]
        n %= 100
        if n:
            words.append("AND")
    if n >= 20:
        words.append(TENS[n // 10 - 2])
        if n % 10:
            words.append(ONES[n % 10 - 1])
    elif n >= 10:
        words.append(TEENS[n - 10])
    elif n > 0:
        words.append(ONES[n - 1])
    return " ".join(words)


# ---------------------------------------------------------------------------------------
# what people say to a device besides sentences: single words (Speech Commands' command
# words, digits and its other words), short commands and digit strings

COMMAND_WORDS = ["YES", "NO", "UP", "DOWN", "LEFT", "RIGHT", "ON", "OFF", "STOP", "GO"]
SPEECH_COMMANDS_OTHER_WORDS = ["BED", "BIRD", "CAT", "DOG", "HAPPY", "HOUSE", "MARVIN",
                               "SHEILA", "TREE", "WOW", "BACKWARD", "FORWARD", "FOLLOW",
                               "LEARN", "VISUAL"]

SLOTS = {
    "time": TIMES, "clock": CLOCKS, "daypart": DAYPARTS, "date": DATES, "dayord": DAY_ORDINALS,
    "month": MONTHS, "day": DAYS, "when": WHEN, "day_ref": DAY_REFS, "past_when": PAST_WHEN,
    "duration": DURATIONS,
    "name": FIRST_NAMES, "relative": RELATIVES, "professional": PROFESSIONALS,
    "person": PEOPLE, "job": JOBS, "city": CITIES, "country": COUNTRIES,
    "destination": DESTINATIONS, "language": LANGUAGES, "greeting": GREETINGS,
    "town_place": TOWN_PLACES, "near_place": NEAR_PLACES, "shop": SHOPS,
    "room": ROOMS, "device": DEVICES, "color": COLORS, "light_setting": LIGHT_SETTINGS,
    "door": DOORS, "belonging": BELONGINGS, "home_item": HOME_ITEMS, "furniture": FURNITURE,
    "spot": SPOTS, "chore": CHORES,
    "countable_food": COUNTABLE_FOODS, "plural_food": PLURAL_FOODS, "mass_food": MASS_FOODS,
    "food": FOODS,
    "package": PACKAGES, "dish": DISHES, "meal": MEALS, "cuisine": CUISINES,
    "cook_verb": COOK_VERBS, "prep_verb": PREP_VERBS, "measure": MEASURES,
    "conversion": CONVERSIONS, "unit_pair": UNIT_PAIRS, "taste": TASTES,
    "clothes_sg": CLOTHES_SG, "clothes_pl": CLOTHES_PL, "size": SIZES, "money": MONEY,
    "gift": GIFTS, "occasion": OCCASIONS, "shop_adj": SHOP_ADJ,
    "weather_adj": WEATHER_ADJ, "weather_noun": WEATHER_NOUNS, "weather_gear": WEATHER_GEAR,
    "transport": TRANSPORT, "trip_status": TRIP_STATUS, "packing": PACKING,
    "activity": ACTIVITIES, "sport": SPORTS, "animal": ANIMALS, "pet": PETS,
    "genre": GENRES, "instrument": INSTRUMENTS, "news_topic": NEWS_TOPICS,
    "official": OFFICIALS, "issue": ISSUES, "reading": READING, "book_topic": BOOK_TOPICS,
    "show": SHOWS, "exp_adj": EXPERIENCE_ADJ, "place_adj": PLACE_ADJ, "adverb": ADVERBS,
    "feeling": FEELINGS, "status": STATUS, "symptom": SYMPTOMS, "event": EVENTS,
    "event_a": EVENTS_A,
    "digit": ["ZERO"] + ONES, "command_word": COMMAND_WORDS,
}
DEVICE_TEMPLATES = [
    (8, "{command_word}"),
    (6, "{digit}"),
    (2, "[%s]" % "|".join(SPEECH_COMMANDS_OTHER_WORDS)),
    (5, "{digit} {digit} [|{digit}|{digit} {digit}|{digit} {digit} {digit}|{digit} {digit} "
        "{digit} {digit} {digit}]"),
    (2, "{command_word} {command_word}"),
    (2, "[GO|TURN|MOVE|LOOK|SCROLL|SWIPE] [LEFT|RIGHT|UP|DOWN] [|PLEASE|NOW|AGAIN]"),
    (2, "[TURN|SWITCH] [IT|THAT|THE LIGHT|THE LIGHTS|THE RADIO] [ON|OFF] [|PLEASE|NOW]"),
    (2, "[YES|NO] [PLEASE|THANKS|THANK YOU|NOT NOW|OF COURSE|I DO|I DON'T]"),
    (1, "STOP [IT|NOW|THAT|THE MUSIC|PLEASE]"),
    (1, "GO [ON|BACK|HOME|AHEAD|AWAY|FASTER|SLOWER]"),
    (1, "[VOLUME|SOUND] [UP|DOWN]"),
]

# ---------------------------------------------------------------------------------------
# sentence templates: (weight, template)

TEMPLATES = [
    # --- home: lights, devices, doors, alarms, timers
    (2, "SET AN ALARM FOR {clock} [{when}|]"),
    (2, "WAKE ME UP AT {clock} {when}"),
    (2, "SET A [|KITCHEN|COOKING] TIMER FOR {duration} [|FOR THE {dish}]"),
    (1, "HOW MUCH TIME IS LEFT ON THE TIMER"),
    (3, "TURN THE {device} [ON|OFF] IN THE {room}"),
    (3, "TURN [ON|OFF] THE {device} [PLEASE|IN THE {room}|IN THE {room} PLEASE|AT {time}]"),
    (2, "PLEASE SWITCH [ON|OFF] THE {device} IN THE {room}"),
    (3, "[|PLEASE|CAN YOU] MAKE THE {room} LIGHTS {light_setting} [|FOR THE PARTY|UNTIL {time}|IN "
        "{n:2:20} MINUTES]"),
    (2, "TURN THE LIGHTS IN THE {room} [{light_setting}|DOWN A BIT|UP]"),
    (2, "CAN YOU MAKE IT [BRIGHTER|DARKER|WARMER|COOLER|QUIETER] IN THE {room}"),
    (1, "DIM THE LIGHTS IN THE {room} TO {n:1:99} PERCENT"),
    (1, "SET THE TEMPERATURE [IN THE {room}|] TO {n:15:30} DEGREES"),
    (2, "[INCREASE|DECREASE|TURN UP|TURN DOWN] THE VOLUME [BY {n:1:20}|IN THE {room}|A LITTLE]"),
    (2, "IS THE {device} IN THE {room} [ON|OFF]"),
    (2, "DID I LEAVE THE {device} ON IN THE {room}"),
    (2, "[PLEASE|CAN YOU] OPEN THE {door} [|A LITTLE|FOR THE CAT|FOR {name}]"),
    (2, "CLOSE THE {door} [BEFORE YOU GO OUT|] {when}"),
    (1, "LOCK THE [FRONT DOOR|BACK DOOR|GARAGE DOOR|CAR|GATE] [BEFORE YOU LEAVE|TONIGHT|BEFORE "
        "BED]"),
    (2, "START THE [OVEN|WASHING MACHINE|COFFEE MACHINE|DISHWASHER|DRYER] AT {clock}"),
    (1, "STOP THE [MUSIC|TIMER|ALARM|RADIO] [NOW|PLEASE|IN THE {room}]"),
    (2, "CANCEL MY [ALARM|APPOINTMENT|TIMER|{event}] FOR {day_ref}"),
    (3, "WHERE DO WE KEEP THE {home_item} [|AND THE {home_item}]"),
    (3, "WE KEEP THE {home_item} {spot}"),
    (3, "CAN YOU [BRING|GET|FETCH] ME THE {home_item} FROM THE {room}"),
    (3, "I PUT THE {home_item} {spot}"),
    (2, "WHO TOOK THE {home_item} FROM THE {room}"),
    # --- lost things
    (3, "[HAVE YOU SEEN|I CAN'T FIND] MY {belonging} [ANYWHERE|IN THE {room}|AROUND THE HOUSE|IN "
        "THE CAR]"),
    (2, "[WHERE DID I PUT|HELP ME FIND|WHO MOVED] MY {belonging} [|AGAIN|THIS MORNING]"),
    (4, "I [THINK I|] LEFT MY {belonging} {spot}"),
    (3, "[|{name}|MOM|DAD] DON'T FORGET YOUR {belonging} [WHEN YOU LEAVE|TOMORROW|THIS "
        "TIME|AGAIN]"),
    (3, "I SAW YOUR {belonging} {spot}"),
    (2, "HAS ANYONE SEEN MY {belonging} OR MY {belonging}"),
    # --- reminders, messages, calls
    (10, "REMIND ME TO {chore} {when}"),
    (4, "REMIND ME TO {chore} AT {time}"),
    (2, "WHO IS GOING TO {chore} [TODAY|THIS WEEK|]"),
    (4, "DON'T LET ME FORGET TO {chore}"),
    (4, "I [HAVE|NEED] TO {chore} [BEFORE|ON|] {day_ref}"),
    (3, "CAN YOU {chore} [PLEASE|WHILE I AM OUT|BEFORE DINNER|]"),
    (2, "DID YOU {chore} [TODAY|YESTERDAY|THIS MORNING|]"),
    (3, "CALL {person} [BACK|AGAIN|ABOUT THE {event}] {when}"),
    (2, "CALL [{person}|THE BANK|THE SCHOOL|THE PHARMACY|THE HOTEL] [NOW PLEASE|LATER TODAY|AT "
        "{clock}|BACK ABOUT THE {event}]"),
    (3, "SEND A MESSAGE TO {person} SAYING I AM {status}"),
    (2, "TELL {person} [THAT|] I AM [ON MY WAY|RUNNING LATE|STUCK IN TRAFFIC|AT THE {town_place}]"),
    (2, "TEXT {person} THAT I WILL BE [HOME SOON|THERE IN {duration}|LATE|HOME AT {time}]"),
    (2, "TELL {person} THAT [DINNER|LUNCH|BREAKFAST|THE TAXI|THE CAR] IS READY"),
    (2, "REMIND ME ABOUT {event_a} AT {clock}"),
    (2, "READ MY LAST [MESSAGE|EMAIL|TEXT] FROM {person}"),
    (2, "DID {person} [REPLY TO MY EMAIL|CALL ME|LEAVE A MESSAGE|SEND THE PHOTOS] "
        "[|TODAY|{past_when}]"),
    (2, "{person} [CALLED YOU|PHONED YOU|STOPPED BY|WAS HERE|CAME BY] [WHILE YOU WERE "
        "OUT|{past_when}]"),
    (2, "I AM {adverb} {feeling} [TODAY|THIS MORNING|TONIGHT|RIGHT NOW|AFTER THE {event}]"),
    (3, "[MY {relative}|{name}] [IS|FEELS|SEEMS] {adverb} {feeling} [TODAY|THIS WEEK|AFTER THE "
        "{event}]"),
    # --- calendar
    (3, "ADD {event_a} TO MY CALENDAR FOR {day_ref}"),
    (2, "WHAT IS ON MY CALENDAR {when}"),
    (3, "MOVE [THE|MY] {event} FROM {day} TO {day}"),
    (3, "I HAVE A {event} [WITH {name}|] AT {time} {when}"),
    (3, "WHEN IS MY NEXT {event} [WITH {person}|]"),
    (3, "SCHEDULE A {event} WITH {person} {when}"),
    (2, "MY {event} [HAS BEEN|WAS] MOVED TO {day_ref}"),
    (3, "THE {event} STARTS AT {time} AND ENDS AT {time}"),
    (1, "MY BIRTHDAY IS ON {date}"),
    (2, "[MY {relative}|{name}] HAS A BIRTHDAY [ON {date}|IN {month}|NEXT {day}]"),
    (1, "HOW MANY DAYS ARE THERE UNTIL {date}"),
    (1, "WHAT DAY OF THE WEEK IS {date}"),
    (1, "WHAT IS TODAY'S DATE"),
    (1, "AM I FREE {when} [AFTER {time}|BEFORE {time}|]"),
    (1, "IS {date} A [HOLIDAY|WORKING DAY|{day}]"),
    # --- weather
    (3, "WHAT IS THE WEATHER [LIKE|GOING TO BE] IN {destination} {when}"),
    (3, "WILL IT [RAIN|SNOW|BE {weather_adj}] IN {destination} {when}"),
    (3, "IS IT GOING TO BE {weather_adj} {when}"),
    (2, "DO I NEED {weather_gear} {when}"),
    (2, "[TAKE|BRING|DON'T FORGET] {weather_gear} [WITH YOU TODAY|FOR TOMORROW|IT LOOKS LIKE "
        "RAIN]"),
    (3, "[|I THINK|THEY SAY] IT IS {adverb} {weather_adj} [OUTSIDE|IN {city}|THIS MORNING|TODAY]"),
    (2, "IT WAS {adverb} {weather_adj} IN {destination} {past_when}"),
    (3, "THERE IS A [SMALL|GOOD|STRONG|] CHANCE OF {weather_noun} {when}"),
    (1, "THE [HIGH|LOW|TEMPERATURE] {when} WILL BE {n:1:40} DEGREES"),
    (2, "HOW [HOT|COLD|WARM|WINDY] WILL IT BE IN {destination} {when}"),
    (1, "WHAT TIME IS [SUNRISE|SUNSET] {when}"),
    (3, "[WE CAN EXPECT|WATCH OUT FOR|THEY SAID THERE WILL BE] {weather_noun} {when}"),
    (2, "THE FORECAST SAYS {weather_noun} [FOR|IN] {destination} {when}"),
    # --- travel and directions
    (3, "THE {transport} TO {city} LEAVES AT {clock}"),
    (2, "IS MY [FLIGHT|TRAIN|BUS] TO {destination} {trip_status}"),
    (2, "THE {transport} TO {city} IS {trip_status}"),
    (2, "THE {transport} FROM {city} IS [RUNNING|] {n:5:50} MINUTES LATE"),
    (2, "BOOK A [HOTEL ROOM|CHEAP HOTEL|ROOM|DOUBLE ROOM] IN {city} FOR {n:2:9} NIGHTS"),
    (2, "I WOULD LIKE A [ONE WAY|RETURN] TICKET TO {city} [PLEASE|FOR {day_ref}]"),
    (2, "WHICH PLATFORM DOES THE {transport} TO {city} LEAVE FROM"),
    (2, "HOW LONG IS THE [FLIGHT|DRIVE|TRAIN RIDE|JOURNEY] FROM {city} TO {destination}"),
    (3, "WE ARE GOING TO {country} [FOR OUR HOLIDAY|IN {month}|NEXT SUMMER|FOR TWO WEEKS]"),
    (3, "DON'T FORGET TO PACK {packing} [AND {packing}|]"),
    (2, "WE LAND IN {destination} AT {clock}"),
    (2, "I NEED A TAXI TO THE {town_place} AT {clock}"),
    (1, "I NEED A TAXI TO THE AIRPORT AT {time} {when}"),
    (2, "RENT A CAR IN {destination} FROM {day} TO {day}"),
    (2, "HOW LONG DOES IT TAKE TO [DRIVE|FLY|GET] TO {city}"),
    (2, "HOW FAR IS {city} FROM {city} [|BY CAR|BY TRAIN]"),
    (2, "{city} IS ABOUT {n:1:9} HUNDRED [MILES|KILOMETERS] FROM {city}"),
    (2, "WHAT TIME IS IT IN {destination} [|RIGHT NOW]"),
    (2, "FIND ME A [WINDOW|AISLE] SEAT ON THE FLIGHT TO {destination}"),
    (2, "{name} AND {name} ARE [MOVING|FLYING|DRIVING|GOING] TO {destination} {when}"),
    (2, "MY {relative} LIVES IN {destination} [NOW|NEAR THE {town_place}|NOT FAR FROM US|]"),
    (2, "HAVE YOU EVER BEEN TO {country} [OR {country}|]"),
    (2, "[WHAT IS|DO YOU KNOW|WHICH CITY IS] THE CAPITAL OF {country}"),
    (2, "[MY {relative}|{name}] GREW UP IN [A SMALL TOWN IN|THE NORTH OF|THE SOUTH OF|] {country}"),
    # --- town: opening hours, directions
    (4, "WHAT TIME DOES THE {town_place} [OPEN|CLOSE] [ON {day}|TODAY|TOMORROW|TONIGHT]"),
    (3, "IS THE {town_place} OPEN [|LATE|EARLY] [ON {day}|NOW|ON {date}|TODAY]"),
    (3, "HOW DO I GET TO THE [NEAREST|CLOSEST|] {town_place} [FROM HERE|FROM THE {town_place}|]"),
    (3, "WHERE IS THE NEAREST {town_place} [|FROM HERE|TO THE {town_place}]"),
    (3, "THE {town_place} IS [JUST|] {near_place}"),
    (2, "[OUR|MY] [HOTEL|OFFICE|FLAT|HOUSE|SCHOOL] IS {near_place}"),
    (2, "IT TAKES ABOUT {n:5:59} MINUTES TO WALK TO THE {town_place}"),
    (2, "HOW MANY MILES IS IT TO THE [NEAREST|] {town_place}"),
    (3, "THE {town_place} [IN {city}|ON OUR STREET|NEAR HERE|] IS {adverb} {place_adj}"),
    (2, "WE STAYED IN A {adverb} {place_adj} HOTEL IN {destination}"),
    (2, "IS THE {town_place} USUALLY [BUSY|CROWDED|QUIET|FULL|OPEN] ON {day}"),
    (2, "I [THINK|HOPE|KNOW] THE {town_place} IS [CLOSED|OPEN] ON {day}"),
    (2, "WE MET {person} AT THE {town_place} {past_when}"),
    (3, "{name} WORKS [AT THE {town_place}|AS {job}] [IN {city}|NEAR {city}|THESE DAYS]"),
    (2, "MY {relative} IS {job} [|IN {city}|AT THE {town_place}]"),
    (2, "[MY {relative}|{name}] WANTS TO BE {job} [ONE DAY|]"),
    (2, "[MY {relative}|{name}] USED TO BE {job} [IN {city}|]"),
    # --- shopping
    (3, "ADD {n:2:12} {countable_food} TO THE SHOPPING LIST"),
    (4, "ADD {food} AND {food} TO MY SHOPPING LIST"),
    (3, "DO WE HAVE ANY {food} LEFT [IN THE FRIDGE|IN THE CUPBOARD|OR SHOULD I BUY SOME]"),
    (3, "WE ARE [OUT OF|RUNNING LOW ON] {food} [AND {food}|AGAIN|]"),
    (2, "[BUY|GET|PICK UP] {package} ON THE WAY HOME"),
    (2, "COULD YOU GET {package} AND {package} [PLEASE|]"),
    (2, "HOW MUCH IS THIS {shop_adj} {clothes_sg}"),
    (2, "HOW MUCH ARE THESE {shop_adj} {clothes_pl}"),
    (2, "DO YOU HAVE THIS {clothes_sg} IN {size}"),
    (2, "DO YOU HAVE THESE {clothes_pl} IN {size}"),
    (2, "I WOULD LIKE TO RETURN [THIS {clothes_sg}|THESE {clothes_pl}]"),
    (2, "THE {color} {clothes_sg} COSTS {money}"),
    (2, "[LET'S|WE SHOULD] PAINT THE {room} {color}"),
    (1, "I AM LOOKING FOR A {color} {clothes_sg}"),
    (2, "THAT WILL BE {money} [PLEASE|ALTOGETHER|]"),
    (2, "I AM LOOKING FOR A {shop_adj} {clothes_sg} FOR {occasion}"),
    (2, "I NEED [NEW|SOME] {shop_adj} {clothes_pl} FOR {occasion}"),
    (2, "IS THERE A SALE AT THE {shop} {when}"),
    (2, "I AM GOING TO THE {shop} [DO YOU NEED ANYTHING|LATER|THIS AFTERNOON]"),
    (2, "WHAT SHOULD I WEAR FOR {occasion}"),
    (2, "[CAN I PAY BY CARD|CAN I HAVE A RECEIPT|DO YOU TAKE CASH|CAN I GET A BAG] [PLEASE|AT THE "
        "{shop}]"),
    (2, "WHERE CAN I BUY A {gift} FOR {person}"),
    (2, "[MY {relative}|{name}] GAVE ME A {gift} FOR MY BIRTHDAY"),
    (2, "THANK YOU FOR THE [LOVELY|BEAUTIFUL|WONDERFUL|] {gift}"),
    (2, "[WE|I] [BOUGHT|FOUND|ORDERED] A {gift} FOR {person} AT THE {shop}"),
    (2, "ORDER {n:2:9} [PIZZAS|COFFEES|SANDWICHES|SALADS|BURGERS] FOR {clock}"),
    (2, "THE {shop} [CLOSES|OPENS] AT {time} ON {day}"),
    # --- food and cooking
    (3, "WE ARE HAVING {dish} FOR {meal} [TONIGHT|TOMORROW|ON {day}|]"),
    (3, "[CAN WE|LET'S|COULD YOU] MAKE {dish} FOR {meal} [TONIGHT|TOMORROW|ON {day}]"),
    (2, "I [REALLY|] LOVE YOUR {dish} [{name}|GRANDMA|MOM|]"),
    (2, "HOW LONG SHOULD I {cook_verb} THE {food} FOR"),
    (2, "{cook_verb} THE {food} FOR {duration}"),
    (3, "[|FIRST|THEN|NOW] {prep_verb} THE {food} [AND THE {food}|FINELY|INTO SMALL PIECES]"),
    (2, "DO I NEED TO {prep_verb} THE {food} BEFORE I {cook_verb} IT"),
    (1, "PREHEAT THE OVEN TO {n:1:4} HUNDRED [AND FIFTY|] DEGREES"),
    (2, "HOW MANY {measure} DO I NEED FOR THE {dish}"),
    (2, "ADD {n:2:9} {measure} [AND STIR|AND MIX WELL|]"),
    (2, "FIND ME A [SIMPLE|QUICK|HEALTHY|CHEAP|GOOD] RECIPE FOR {dish}"),
    (3, "WHAT CAN I MAKE WITH {food} AND {food}"),
    (2, "THIS {mass_food} [FROM THE MARKET|FROM THE BAKERY|YOU BOUGHT|] IS {adverb} {taste}"),
    (2, "THESE [{countable_food}|{plural_food}] [FROM THE MARKET|FROM THE SUPERMARKET|FROM THE "
        "GARDEN|] ARE {adverb} {taste}"),
    (3, "[I REALLY|WE ALL|MY KIDS|I DON'T] [LIKE|LOVE|ENJOY|EAT] {food} [FOR BREAKFAST|WITH "
        "{food}|IN THE MORNING|FOR LUNCH]"),
    (2, "{name} [MADE|BAKED|COOKED|BROUGHT] {dish} FOR [US|EVERYONE|{meal}]"),
    (2, "FIND A [GOOD|CHEAP|NICE|] {cuisine} RESTAURANT [NEAR HERE|NEAR ME|IN {city}]"),
    (2, "THE FOOD AT THE {cuisine} RESTAURANT [WAS|IS] {adverb} {taste}"),
    (2, "LET'S ORDER {cuisine} FOOD [TONIGHT|FOR DINNER|FOR LUNCH]"),
    (2, "BOOK A TABLE FOR {n:2:12} PEOPLE AT {clock}"),
    (2, "BOOK A TABLE AT THE {cuisine} RESTAURANT FOR {day_ref}"),
    (1, "HOW MANY CALORIES ARE IN [{food}|{dish}]"),
    # --- numbers, units, words
    (2, "WHAT IS {n:1:99} [PLUS|MINUS|TIMES|DIVIDED BY] {n:1:99}"),
    (1, "WHAT IS {n:2:20} PERCENT OF {n:10:999}"),
    (4, "HOW MANY {conversion}"),
    (3, "CONVERT {n:2:99} {unit_pair} [|FOR ME|PLEASE]"),
    (1, "[COUNT|COUNT BACKWARDS] FROM {n:10:30} TO {n:1:9}"),
    (3, "HOW DO YOU SAY {greeting} IN {language}"),
    (2, "WHAT IS {greeting} IN {language}"),
    (2, "SAY [HELLO|GOODBYE|GOOD NIGHT|HAPPY BIRTHDAY|THANK YOU|SORRY] TO {person} FOR ME"),
    (2, "HOW DO YOU SPELL [{food}|{dish}|{belonging}|{home_item}]"),
    (2, "WHAT IS ANOTHER WORD FOR [{exp_adj}|{place_adj}|{taste}]"),
    (1, "TRANSLATE THE WORD [{food}|{taste}|{exp_adj}] INTO {language}"),
    (2, "[MY {relative}|{name}] SPEAKS {language} AND {language} [|VERY WELL|A LITTLE]"),
    # --- music, reading, news
    (3, "[|CAN YOU|COULD YOU] PLAY {genre} [IN THE {room}|FOR ME|AGAIN PLEASE|A BIT LOUDER|IN THE "
        "CAR]"),
    (2, "PUT ON {genre} [FOR THE KIDS|WHILE I COOK|IN THE {room}]"),
    (2, "I [LOVE|LIKE|DON'T LIKE] LISTENING TO {genre} [IN THE {room}|IN THE CAR|]"),
    (2, "PLAY SOME {instrument} MUSIC [IN THE {room}|FOR {person}|]"),
    (1, "SKIP TO THE NEXT SONG"),
    (1, "GO BACK {n:1:30} SECONDS"),
    (1, "ADD THIS SONG TO MY [PARTY|RUNNING|MORNING|DRIVING] PLAYLIST"),
    (1, "[WHO SINGS|WHAT IS THE NAME OF|WHO WROTE] THIS SONG"),
    (2, "[MY {relative}|{name}] IS LEARNING TO PLAY THE {instrument}"),
    (3, "READ ME THE [LATEST|TOP|] {news_topic} [NEWS|HEADLINES|STORIES] [|FROM "
        "{destination}|PLEASE]"),
    (2, "WHAT ARE TODAY'S {news_topic} HEADLINES [|IN {destination}]"),
    (2, "ANY {news_topic} NEWS FROM {destination} [TODAY|THIS MORNING]"),
    (2, "READ ME THE NEWS FROM {destination}"),
    (2, "WHAT DID THE {official} SAY ABOUT THE {issue}"),
    (2, "WHAT IS THE LATEST ON THE {issue} [IN {city}|]"),
    (2, "THE {official} [WILL SPEAK|TALKED|HAS SPOKEN] ABOUT THE {issue} {when}"),
    (2, "THE {official} IS VISITING {destination} {when}"),
    (2, "WHO WON THE {sport} [GAME|MATCH] [LAST NIGHT|YESTERDAY|{past_when}]"),
    (2, "WHAT WAS THE SCORE IN THE {sport} [GAME|MATCH|FINAL]"),
    (2, "[MY {relative}|{name}] PLAYS {sport} [ON {day}|EVERY WEEKEND|AT SCHOOL|WITH {name}|AT "
        "THE SPORTS CENTER]"),
    (2, "I AM READING A {reading} ABOUT {book_topic}"),
    (2, "[MY {relative}|{name}] WROTE A {reading} ABOUT {book_topic}"),
    (2, "IS THERE A [MOVIE|DOCUMENTARY|PODCAST] ABOUT {book_topic}"),
    (2, "THE {reading} [I AM READING|{name} GAVE ME|FROM THE LIBRARY|] IS {adverb} {exp_adj}"),
    (2, "READ THE NEXT [CHAPTER|PAGE|STORY|POEM] OF MY {reading} [|PLEASE|TO THE KIDS]"),
    (1, "TURN TO PAGE {n:1:400}"),
    (2, "FIND [AN ARTICLE|A BOOK|A PODCAST|A SHORT VIDEO] ABOUT {book_topic}"),
    (3, "THAT WAS A {adverb} {exp_adj} {show} [|YESTERDAY|LAST NIGHT|LAST WEEKEND]"),
    (3, "[I THOUGHT THE|EVERYONE SAID THE|THE] {show} WAS {adverb} {exp_adj}"),
    (3, "I HAD A {adverb} {exp_adj} [DAY|WEEK|WEEKEND|TIME|EVENING] [AT THE {town_place}|IN "
        "{destination}|]"),
    # --- outings, pets, nature, health
    (5, "[LET'S|WE COULD|SHALL WE|I WANT TO] {activity} {when}"),
    (3, "ARE YOU [FREE|GOING|READY] TO {activity} {when}"),
    (3, "{name} AND I WANT TO {activity} [{when}|]"),
    (4, "WOULD YOU LIKE TO {activity} {when}"),
    (2, "WE USED TO {activity} EVERY [SUMMER|WEEKEND|SUNDAY]"),
    (2, "[DID ANYONE|DON'T FORGET TO|REMEMBER TO|WHO WILL] FEED THE {pet} [|BEFORE YOU LEAVE|THIS "
        "MORNING|AT {time}]"),
    (2, "[|I THINK] [OUR|MY] {pet} [IS|SEEMS|LOOKS] {feeling} [TODAY|THIS MORNING|SINCE "
        "{day}|AGAIN]"),
    (3, "I SAW {animal} [IN THE GARDEN|IN THE PARK|BY THE ROAD|NEAR THE RIVER] {past_when}"),
    (2, "THERE IS {animal} [IN THE GARDEN|ON THE ROOF|UNDER THE CAR|IN THE {room}]"),
    (2, "WHAT SOUND DOES {animal} MAKE"),
    (1, "{person} [IS TAKING|TOOK] THE {pet} TO THE VET"),
    (2, "I HAVE HAD {symptom} SINCE {day}"),
    (2, "I THINK [I HAVE|MY {relative} HAS|{name} HAS] {symptom}"),
    (2, "[MY {relative}|{name}] HAS {symptom} [AND {symptom}|AND CAN'T COME|TODAY]"),
    (1, "BOOK AN APPOINTMENT WITH THE [DOCTOR|DENTIST|NURSE] FOR {day_ref}"),
    (2, "{name} IS COMING FOR [DINNER|LUNCH|COFFEE|THE WEEKEND] {when}"),
    (1, "WISH {name} A HAPPY BIRTHDAY FROM [ME|US|ALL OF US]"),
    (2, "I WILL BE HOME [AT {clock}|IN {duration}|BEFORE {time}|AFTER {time}]"),
    (2, "[IS|WHEN IS] {person} COMING HOME [TONIGHT|SOON|FOR {meal}|]"),
]


# ---------------------------------------------------------------------------------------
# the notation: parser, sampler, vocabulary

_TOKEN = re.compile(r"\{[^{}]*\}|\[|\]|\||[^\[\]|{}]+")
_WORD = re.compile(r"^[A-Z']+$")


def _parse(text: str) -> tuple:
    """Parse the notation into a sequence of items: a word (str), ``("alt", (seq, ...))``,
    ``("num", lo, hi)`` or ``("slot", name)``."""
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != text:
        raise ValueError(f"bad template {text!r}")
    pos = 0

    def seq(depth):
        nonlocal pos
        items = []
        while pos < len(tokens):
            t = tokens[pos]
            if t in ("|", "]"):
                if depth == 0:
                    raise ValueError(f"unbalanced '{t}' in {text!r}")
                break
            pos += 1
            if t == "[":
                alts = [seq(depth + 1)]
                while pos < len(tokens) and tokens[pos] == "|":
                    pos += 1
                    alts.append(seq(depth + 1))
                if pos >= len(tokens) or tokens[pos] != "]":
                    raise ValueError(f"unclosed '[' in {text!r}")
                pos += 1
                items.append(("alt", tuple(alts)))
            elif t.startswith("{"):
                body = t[1:-1]
                if body.startswith("n:"):
                    lo, hi = map(int, body[2:].split(":"))
                    if not 0 <= lo <= hi <= 999:
                        raise ValueError(f"bad number range {t} in {text!r}")
                    items.append(("num", lo, hi))
                elif body in SLOTS:
                    items.append(("slot", body))
                else:
                    raise ValueError(f"unknown slot {t} in {text!r}")
            else:
                for w in t.split():
                    if not _WORD.match(w):
                        raise ValueError(f"bad word {w!r} in {text!r}")
                    items.append(w)
        return tuple(items)

    out = seq(0)
    if pos != len(tokens):
        raise ValueError(f"unbalanced brackets in {text!r}")
    return out


class _Choice:
    """The entries of a word list or of the template table, parsed, with their weights."""

    def __init__(self, entries):
        pairs = [e if isinstance(e, tuple) else (1, e) for e in entries]
        self.seqs = tuple(_parse(text) for _, text in pairs)
        self.weights = tuple(w for w, _ in pairs)
        self.uniform = len(set(self.weights)) == 1
        self.cum = list(itertools.accumulate(self.weights))

    def pick(self, rng: random.Random) -> tuple:
        if self.uniform:
            return self.seqs[rng.randrange(len(self.seqs))]
        return self.seqs[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


_SLOTS = {name: _Choice(entries) for name, entries in SLOTS.items()}
_TEMPLATES = _Choice(TEMPLATES)
_DEVICE_TEMPLATES = _Choice(DEVICE_TEMPLATES)


def _expand(seq: tuple, rng: random.Random, out: list) -> None:
    for it in seq:
        if type(it) is str:
            out.append(it)
        elif it[0] == "alt":
            _expand(it[1][rng.randrange(len(it[1]))], rng, out)
        elif it[0] == "num":
            out.append(spell(rng.randint(it[1], it[2])))
        else:
            _expand(_SLOTS[it[1]].pick(rng), rng, out)


def render(text: str, rng: random.Random) -> str:
    """Expand one piece of the notation (e.g. ``"{clock}"``) with ``rng``."""
    out = []
    _expand(_parse(text), rng, out)
    return " ".join(" ".join(out).split())


def sentence(rng: random.Random) -> str:
    """One upper-case sentence, spaces normalised; a pure function of ``rng``'s state."""
    out = []
    _expand(_TEMPLATES.pick(rng), rng, out)
    return " ".join(" ".join(out).split())


def device_utterance(rng: random.Random) -> str:
    """A single word, a short command or a digit string (one to seven digits), as people
    say to a device; a pure function of ``rng``'s state."""
    out = []
    _expand(_DEVICE_TEMPLATES.pick(rng), rng, out)
    return " ".join(" ".join(out).split())


def number(rng: random.Random, lo: int = 1, hi: int = 99) -> str:
    return spell(rng.randint(lo, hi))


def clock(rng: random.Random) -> str:
    """A time of day, sometimes with the part of the day: ``"HALF PAST SEVEN"``."""
    return render("{clock}", rng)


def date(rng: random.Random) -> str:
    """A date: ``"THE TWENTY FIRST OF MAY"`` or ``"MAY TWENTY FIRST"``."""
    return render("{date}", rng)


def when(rng: random.Random) -> str:
    """When something happens: ``"TOMORROW"``, ``"ON FRIDAY"``, ``"NEXT WEEK"``."""
    return render("{when}", rng)


# ---------------------------------------------------------------------------------------
# vocabulary, lengths, sentences restricted to a set of words

def _seq_words(seq: tuple, stack: tuple = ()) -> frozenset:
    words = set()
    for it in seq:
        if type(it) is str:
            words.add(it)
        elif it[0] == "alt":
            for alt in it[1]:
                words |= _seq_words(alt, stack)
        elif it[0] == "num":
            words.update(w for n in range(it[1], it[2] + 1) for w in spell(n).split())
        else:
            if it[1] in stack:
                raise ValueError(f"slot {it[1]!r} refers to itself")
            for s in _SLOTS[it[1]].seqs:
                words |= _seq_words(s, stack + (it[1],))
    return frozenset(words)


@lru_cache(maxsize=1)
def vocabulary() -> frozenset:
    """Every word :func:`sentence` can produce, from the templates and word lists (every
    alternative and list entry is drawn with a positive probability)."""
    words = set()
    for seq in _TEMPLATES.seqs + _DEVICE_TEMPLATES.seqs:
        words |= _seq_words(seq)
    return frozenset(words)


def _length_bounds(seq: tuple) -> tuple:
    lo = hi = 0
    for it in seq:
        if type(it) is str:
            a = b = 1
        else:
            if it[0] == "alt":
                bounds = [_length_bounds(s) for s in it[1]]
            elif it[0] == "num":
                bounds = [(len(spell(n).split()),) * 2 for n in range(it[1], it[2] + 1)]
            else:
                bounds = [_length_bounds(s) for s in _SLOTS[it[1]].seqs]
            a, b = min(x for x, _ in bounds), max(y for _, y in bounds)
        lo, hi = lo + a, hi + b
    return lo, hi


@lru_cache(maxsize=1)
def length_bounds() -> tuple:
    """(fewest, most) words in a sentence, over every template."""
    bounds = [_length_bounds(s) for s in _TEMPLATES.seqs]
    return min(x for x, _ in bounds), max(y for _, y in bounds)


class _Within:
    """Which parts of the grammar can be expanded using only ``allowed`` words."""

    def __init__(self, allowed: frozenset):
        self.allowed = allowed
        self.slot_ok = {}
        self.nums = {}

    def numbers(self, lo: int, hi: int) -> list:
        key = (lo, hi)
        if key not in self.nums:
            self.nums[key] = [n for n in range(lo, hi + 1)
                              if all(w in self.allowed for w in spell(n).split())]
        return self.nums[key]

    def seq_ok(self, seq: tuple) -> bool:
        for it in seq:
            if type(it) is str:
                ok = it in self.allowed
            elif it[0] == "alt":
                ok = any(self.seq_ok(s) for s in it[1])
            elif it[0] == "num":
                ok = bool(self.numbers(it[1], it[2]))
            else:
                ok = self.choice_ok(it[1])
            if not ok:
                return False
        return True

    def choice_ok(self, name: str) -> bool:
        if name not in self.slot_ok:
            self.slot_ok[name] = any(self.seq_ok(s) for s in _SLOTS[name].seqs)
        return self.slot_ok[name]

    def pick(self, choice: _Choice, rng: random.Random) -> tuple:
        ok = [(s, w) for s, w in zip(choice.seqs, choice.weights) if self.seq_ok(s)]
        cum = list(itertools.accumulate(w for _, w in ok))
        return ok[bisect.bisect_right(cum, rng.random() * cum[-1])][0]

    def expand(self, seq: tuple, rng: random.Random, out: list) -> None:
        for it in seq:
            if type(it) is str:
                out.append(it)
            elif it[0] == "alt":
                ok = [s for s in it[1] if self.seq_ok(s)]
                self.expand(ok[rng.randrange(len(ok))], rng, out)
            elif it[0] == "num":
                out.append(spell(rng.choice(self.numbers(it[1], it[2]))))
            else:
                self.expand(self.pick(_SLOTS[it[1]], rng), rng, out)


@lru_cache(maxsize=8)
def _within(allowed: frozenset) -> _Within:
    return _Within(allowed)


def sentence_within(rng: random.Random, words) -> str:
    """A sentence made only of ``words`` (e.g. the vocabulary of a training set), drawn
    by :func:`sentence`'s weights with every choice restricted to the alternatives that
    can still be completed from ``words``: one pass, no rejection loop.  A pure function
    of ``rng``'s state and ``words``; ``ValueError`` if no sentence fits (a set that
    holds the words of any one sentence of the grammar always fits)."""
    w = _within(frozenset(words))
    if not any(w.seq_ok(s) for s in _TEMPLATES.seqs):
        raise ValueError("no sentence of the grammar uses only the given words")
    out = []
    w.expand(w.pick(_TEMPLATES, rng), rng, out)
    return " ".join(" ".join(out).split())
